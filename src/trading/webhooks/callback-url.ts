/**
 * The SSRF guard of callbacks: a callback URL chosen by a user must not make Bourse call
 * into its own network (loopback, private, link-local, CGNAT, multicast addresses, and
 * their IPv4-mapped IPv6 forms), unless the operator allowed those networks.
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

/** Networks no callback may reach unless allowed. IPv4 rules also match IPv4-mapped IPv6 (`::ffff:a.b.c.d`). */
const forbidden = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"; Linux sends 0.0.0.0 to the local host
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata endpoints
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address
] as const) {
  forbidden.addSubnet(network, prefix, 'ipv4')
}
for (const [network, prefix] of [
  ['::', 96], // unspecified, loopback and the deprecated IPv4-compatible addresses
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // deprecated site-local
  ['ff00::', 8], // multicast
] as const) {
  forbidden.addSubnet(network, prefix, 'ipv6')
}

function family(ip: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(ip)
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : undefined
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
 * True when callbacks must not reach `ip`: loopback, private, link-local, unspecified,
 * CGNAT, multicast or reserved (IPv4-mapped IPv6 forms included), and not in `allowed`.
 * Anything that is not an IP address is forbidden.
 */
export function isForbiddenAddress(ip: string, allowed?: BlockList): boolean {
  const type = family(ip)
  if (type === undefined) return true
  if (allowed?.check(ip, type)) return false
  return forbidden.check(ip, type)
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
export function checkCallbackUrl(url: string, allowed?: BlockList): CallbackCheck {
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
  if (ip !== undefined && isForbiddenAddress(ip, allowed)) {
    return { ok: false, reason: `the address ${ip} is private, loopback or reserved` }
  }
  return { ok: true }
}

function refusal(hostname: string, addresses: readonly LookupAddress[], allowed?: BlockList): string | undefined {
  const bad = addresses.find((a) => isForbiddenAddress(a.address, allowed))
  if (bad === undefined) return undefined
  return `${hostname} resolves to ${bad.address}, a private, loopback or reserved address`
}

/**
 * Resolves a host name (every address, as connections do) and refuses it when any address
 * is forbidden: a name must not be able to point some of its connections inwards.
 */
export async function resolveCallbackHost(hostname: string, allowed?: BlockList): Promise<CallbackCheck> {
  const ip = ipLiteral(hostname)
  if (ip !== undefined) {
    return isForbiddenAddress(ip, allowed)
      ? { ok: false, reason: `the address ${ip} is private, loopback or reserved` }
      : { ok: true }
  }
  let addresses: LookupAddress[]
  try {
    addresses = await dnsLookupAsync(hostname, { all: true })
  } catch (err) {
    return { ok: false, reason: `cannot resolve ${hostname} (${(err as NodeJS.ErrnoException).code ?? 'error'})` }
  }
  if (addresses.length === 0) return { ok: false, reason: `${hostname} has no address` }
  const reason = refusal(hostname, addresses, allowed)
  return reason === undefined ? { ok: true } : { ok: false, reason }
}

/**
 * Validates a callback URL when an order is created, so that a bad one is refused at once
 * rather than dead-lettered later. Delivery checks the addresses again (DNS may change).
 */
export async function validateCallbackUrl(url: string, allowed?: BlockList): Promise<CallbackCheck> {
  const checked = checkCallbackUrl(url, allowed)
  if (!checked.ok) return checked
  return resolveCallbackHost(new URL(url).hostname, allowed)
}

/**
 * A `lookup` for `net.connect` that refuses forbidden addresses. It resolves every address
 * and fails when any is forbidden (like {@link resolveCallbackHost}); `net` asks for all of
 * them when it races IPv4 and IPv6 (autoSelectFamily), for one otherwise.
 */
export function createGuardedLookup(allowed?: BlockList): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, '')
        return
      }
      const reason = addresses.length === 0 ? `${hostname} has no address` : refusal(hostname, addresses, allowed)
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
}

/**
 * An undici Agent for callbacks that connects only to addresses callbacks may reach,
 * checked on every new connection (kept-alive connections stay on their checked address).
 */
export function createCallbackAgent(allowed?: BlockList, options: CallbackAgentOptions = {}): Agent {
  // undici spreads these options into net.connect / tls.connect, lookup included.
  const connector = buildConnector({ lookup: createGuardedLookup(allowed), timeout: options.connectTimeoutMs ?? 10_000 })
  return new Agent({
    connect: (opts, callback) => {
      // net.connect does not look up an IP literal: check it here. undici passes IPv6
      // hostnames without their brackets.
      const ip = ipLiteral(opts.hostname)
      if (ip !== undefined && isForbiddenAddress(ip, allowed)) {
        callback(new CallbackAddressRefusedError(`the address ${ip} is private, loopback or reserved`), null)
        return
      }
      connector(opts, callback)
    },
  })
}
