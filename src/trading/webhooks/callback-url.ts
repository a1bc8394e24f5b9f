/**
 * The SSRF guard of callbacks: a callback URL chosen by a user must not make Bourse call
 * into its own network (loopback, private, link-local, CGNAT, multicast and other
 * addresses that are not globally reachable, the IPv6 forms carrying one of them, and the
 * host's own interface addresses), unless the operator allowed those networks.
 *
 * Checking the URL when the order is created is not enough: the name may resolve to a
 * public address then and to 127.0.0.1 at delivery (DNS rebinding). So delivery goes
 * through {@link createCallbackAgent}, whose connector checks the address each connection
 * really uses: the resolved addresses of a name (a custom `lookup` given to
 * `net.connect`/`tls.connect`), or the literal address of an IP URL, which `net.connect`
 * never looks up.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { lookup as dnsLookupAsync } from 'node:dns/promises'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { networkInterfaces } from 'node:os'
import { Agent, buildConnector } from 'undici'
import { quote } from '../../platform/quote.ts'

/** Longest callback URL accepted. */
export const maxCallbackUrlLength = 2048

/** The outcome of a check: ok, or why not. */
export type CallbackCheck = { ok: true } | { ok: false; reason: string }

/** Thrown by the delivery connector for an address callbacks may not reach. */
export class CallbackAddressRefusedError extends Error {
  override name = 'CallbackAddressRefusedError'
  readonly code = 'ERR_CALLBACK_ADDRESS_REFUSED'
}

/**
 * IPv4 networks no callback may reach unless allowed: those of the IANA special-purpose
 * registry that are not globally reachable. The documentation ranges are among them:
 * never a real receiver on the internet, yet used as private networks by some hosts.
 */
const forbiddenIpv4 = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"; Linux sends 0.0.0.0 to the local host
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata endpoints
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  forbiddenIpv4.addSubnet(network, prefix, 'ipv4')
}

/**
 * IPv6 callbacks may reach: global unicast (2000::/3) only. Everything else is
 * unspecified, loopback, IPv4-compatible, the discard prefix 100::/64, local-use NAT64
 * 64:ff9b:1::/48, unique local, link-local, site-local, multicast or unassigned. The
 * forms embedding an IPv4 address are judged by that address first (see
 * {@link embeddedIpv4}).
 */
const globalIpv6 = new BlockList()
globalIpv6.addSubnet('2000::', 3, 'ipv6')
/** Prefixes inside 2000::/3 that are not globally reachable. */
const forbiddenIpv6 = new BlockList()
for (const [network, prefix] of [
  ['2001::', 23], // IETF protocol assignments: Teredo (2001::/32), benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation
] as const) {
  forbiddenIpv6.addSubnet(network, prefix, 'ipv6')
}

function family(ip: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(ip)
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined
}

/** The eight 16-bit words of an IPv6 address (zone dropped), or undefined when it cannot be read. */
function ipv6Words(ip: string): number[] | undefined {
  let canonical: string
  try {
    // The URL parser's serialization: lower case, `::` compressed, a dotted quad as two words.
    canonical = new URL(`http://[${ip.split('%')[0]}]/`).hostname.slice(1, -1)
  } catch {
    return undefined
  }
  const [head = '', tail] = canonical.split('::')
  const words = (part: string | undefined) => (part ? part.split(':').map((word) => Number.parseInt(word, 16)) : [])
  const first = words(head)
  if (tail === undefined) return first
  const last = words(tail)
  return [...first, ...Array<number>(8 - first.length - last.length).fill(0), ...last]
}

/**
 * The IPv4 address an IPv6 address carries to a host, when it is of a form that does:
 * IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), the NAT64
 * well-known prefix (`64:ff9b::a.b.c.d`, reaching that IPv4 host through a translator)
 * and 6to4 (`2002:AABB:CCDD::/48`, whose traffic goes to the IPv4 host AA.BB.CC.DD).
 * Teredo (2001::/32) also embeds addresses (its server's, and its client's obfuscated)
 * but is refused whole, as the rest of 2001::/23.
 */
function embeddedIpv4(words: readonly number[]): string | undefined {
  const ipv4 = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
  const zeros = (from: number, to: number) => words.slice(from, to).every((word) => word === 0)
  const [w0 = 0, w1 = 0, w2 = 0, , w4 = 0, w5 = 0, w6 = 0, w7 = 0] = words
  if (zeros(0, 5) && w5 === 0xffff) return ipv4(w6, w7)
  if (zeros(0, 4) && w4 === 0xffff && w5 === 0) return ipv4(w6, w7)
  if (w0 === 0x64 && w1 === 0xff9b && zeros(2, 6)) return ipv4(w6, w7)
  if (w0 === 0x2002) return ipv4(w1, w2)
  return undefined
}

/** The addresses of this host, which callbacks may not reach unless allowed. */
export type HostAddresses = () => readonly string[]

/**
 * Every address of this host's network interfaces, read at each call (interfaces come
 * and go; the read costs under a microsecond). A callback to one of them reaches the
 * services of this host listening on all interfaces, as loopback would.
 */
export function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((infos) => (infos ?? []).map((info) => info.address))
}

function isHostAddress(ip: string, type: 'ipv4' | 'ipv6', hostAddresses: HostAddresses): boolean {
  const own = new BlockList()
  for (const address of hostAddresses()) {
    const ownType = family(address)
    if (ownType !== undefined) own.addAddress(address, ownType)
  }
  return own.check(ip, type)
}

/**
 * Parses `CALLBACK_ALLOWED_NETWORKS`: comma-separated addresses or CIDR ranges, IPv4 or
 * IPv6 (`127.0.0.1,10.0.0.0/8,::1`). Throws a RangeError naming a malformed entry.
 */
export function parseAllowedNetworks(text: string): BlockList {
  const allowed = new BlockList()
  for (const entry of text.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    const [address = '', prefixText, extra] = entry.split('/')
    const type = family(address)
    const bits = type === 'ipv4' ? 32 : 128
    const prefix = prefixText === undefined ? bits : Number(prefixText)
    if (
      type === undefined ||
      extra !== undefined ||
      (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) ||
      prefix > bits
    ) {
      throw new RangeError(`not an IP address or CIDR range: ${quote(entry)}`)
    }
    allowed.addSubnet(address, prefix, type)
  }
  return allowed
}

/**
 * True when callbacks must not reach `ip`, unless it is in `allowed`: an address of this
 * host (`hostAddresses`), an IPv4 address that is not globally reachable (loopback,
 * private, link-local, CGNAT, documentation, multicast, reserved), an IPv6 address outside
 * global unicast or in its reserved prefixes, or an IPv6 address carrying one of those
 * IPv4 addresses (IPv4-mapped, IPv4-translated, NAT64, 6to4). Anything that is not an IP
 * address is forbidden.
 */
export function isForbiddenAddress(ip: string, allowed?: BlockList, hostAddresses: HostAddresses = interfaceAddresses): boolean {
  const type = family(ip)
  if (type === undefined) return true
  if (allowed?.check(ip, type)) return false
  if (isHostAddress(ip, type, hostAddresses)) return true
  if (type === 'ipv4') return forbiddenIpv4.check(ip, 'ipv4')
  const words = ipv6Words(ip)
  if (words === undefined) return true
  const ipv4 = embeddedIpv4(words)
  if (ipv4 !== undefined) return isForbiddenAddress(ipv4, allowed, hostAddresses)
  return !globalIpv6.check(ip, 'ipv6') || forbiddenIpv6.check(ip, 'ipv6')
}

/** The bare address of a URL hostname that is an IP literal (`[::1]` → `::1`), else undefined. */
function ipLiteral(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
  return isIP(bare) === 0 ? undefined : bare
}

/**
 * Checks what can be checked without DNS: an absolute http(s) URL of at most
 * {@link maxCallbackUrlLength} characters, without credentials, whose host, when it is an
 * IP address, callbacks may reach.
 */
export function checkCallbackUrl(url: string, allowed?: BlockList, hostAddresses: HostAddresses = interfaceAddresses): CallbackCheck {
  if (url.length > maxCallbackUrlLength) {
    return { ok: false, reason: `the URL is longer than ${maxCallbackUrlLength} characters` }
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return { ok: false, reason: 'not an absolute URL' }
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { ok: false, reason: `the scheme must be http or https (got ${parsed.protocol.slice(0, -1)})` }
  }
  if (parsed.username !== '' || parsed.password !== '') {
    return { ok: false, reason: 'the URL must not contain credentials' }
  }
  if (parsed.hostname === '') return { ok: false, reason: 'the URL has no host' }
  const ip = ipLiteral(parsed.hostname)
  if (ip !== undefined && isForbiddenAddress(ip, allowed, hostAddresses)) {
    return { ok: false, reason: `the address ${ip} is private, loopback or reserved, or this host's own` }
  }
  return { ok: true }
}

function refusal(
  hostname: string,
  addresses: readonly LookupAddress[],
  allowed: BlockList | undefined,
  hostAddresses: HostAddresses,
): string | undefined {
  const bad = addresses.find((a) => isForbiddenAddress(a.address, allowed, hostAddresses))
  if (bad === undefined) return undefined
  return `${hostname} resolves to ${bad.address}, a private, loopback or reserved address, or this host's own`
}

/**
 * Resolves a host name (every address, as connections do) and refuses it when any address
 * is forbidden: a name must not be able to point some of its connections inwards.
 */
export async function resolveCallbackHost(
  hostname: string,
  allowed?: BlockList,
  hostAddresses: HostAddresses = interfaceAddresses,
): Promise<CallbackCheck> {
  const ip = ipLiteral(hostname)
  if (ip !== undefined) {
    return isForbiddenAddress(ip, allowed, hostAddresses)
      ? { ok: false, reason: `the address ${ip} is private, loopback or reserved, or this host's own` }
      : { ok: true }
  }
  let addresses: LookupAddress[]
  try {
    addresses = await dnsLookupAsync(hostname, { all: true })
  } catch (err) {
    return { ok: false, reason: `cannot resolve ${hostname} (${(err as NodeJS.ErrnoException).code ?? 'error'})` }
  }
  if (addresses.length === 0) return { ok: false, reason: `${hostname} has no address` }
  const reason = refusal(hostname, addresses, allowed, hostAddresses)
  return reason === undefined ? { ok: true } : { ok: false, reason }
}

/**
 * Validates a callback URL when an order is created, so that a bad one is refused at once
 * rather than dead-lettered later. Delivery checks the addresses again (DNS may change).
 */
export async function validateCallbackUrl(
  url: string,
  allowed?: BlockList,
  hostAddresses: HostAddresses = interfaceAddresses,
): Promise<CallbackCheck> {
  const checked = checkCallbackUrl(url, allowed, hostAddresses)
  if (!checked.ok) return checked
  return resolveCallbackHost(new URL(url).hostname, allowed, hostAddresses)
}

/**
 * A `lookup` for `net.connect` that refuses forbidden addresses. It resolves every address
 * and fails when any is forbidden (like {@link resolveCallbackHost}); `net` asks for all of
 * them when it races IPv4 and IPv6 (autoSelectFamily), for one otherwise.
 */
export function createGuardedLookup(allowed?: BlockList, hostAddresses: HostAddresses = interfaceAddresses): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, '')
        return
      }
      const reason = addresses.length === 0 ? `${hostname} has no address` : refusal(hostname, addresses, allowed, hostAddresses)
      if (reason !== undefined) {
        callback(new CallbackAddressRefusedError(reason), '')
        return
      }
      if (options.all) callback(null, addresses)
      else callback(null, addresses[0]!.address, addresses[0]!.family)
    })
  }
}

/** Options for {@link createCallbackAgent}. */
export interface CallbackAgentOptions {
  /** Time allowed to open a connection (TCP and TLS), in ms. @defaultValue 10000 */
  connectTimeoutMs?: number
  /** This host's addresses, refused as callback targets unless allowed. @defaultValue {@link interfaceAddresses} */
  hostAddresses?: HostAddresses
}

/**
 * An undici Agent for callbacks that connects only to addresses callbacks may reach,
 * checked on every new connection (kept-alive connections stay on their checked address).
 */
export function createCallbackAgent(allowed?: BlockList, options: CallbackAgentOptions = {}): Agent {
  // undici spreads these options into net.connect / tls.connect, lookup included.
  const hostAddresses = options.hostAddresses ?? interfaceAddresses
  const connector = buildConnector({ lookup: createGuardedLookup(allowed, hostAddresses), timeout: options.connectTimeoutMs ?? 10_000 })
  return new Agent({
    connect: (opts, callback) => {
      // net.connect does not look up an IP literal: check it here. undici passes IPv6
      // hostnames without their brackets.
      const ip = ipLiteral(opts.hostname)
      if (ip !== undefined && isForbiddenAddress(ip, allowed, hostAddresses)) {
        callback(new CallbackAddressRefusedError(`the address ${ip} is private, loopback or reserved, or this host's own`), null)
        return
      }
      connector(opts, callback)
    },
  })
}
