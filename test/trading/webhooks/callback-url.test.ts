/** The SSRF guard: addresses, URLs, and real connections through the guarded agent. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import {
  CallbackAddressRefusedError,
  checkCallbackUrl,
  createCallbackAgent,
  createGuardedLookup,
  isForbiddenAddress,
  parseAllowedNetworks,
  resolveCallbackHost,
  validateCallbackUrl,
} from '../../../src/trading/webhooks/callback-url.ts'

const none = parseAllowedNetworks('')

test('forbidden and public addresses', () => {
  const table: Array<[string, boolean]> = [
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['100.127.255.255', true],
    ['100.128.0.1', false],
    ['0.0.0.0', true],
    ['224.0.0.1', true],
    ['239.255.255.250', true],
    ['255.255.255.255', true],
    ['8.8.8.8', false],
    ['93.184.216.34', false],
    ['::', true],
    ['::1', true],
    ['fc00::1', true],
    ['fd12:3456::1', true],
    ['fe80::1', true],
    ['ff02::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:10.0.0.1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:8.8.8.8', false],
    ['::127.0.0.1', true],
    ['2606:4700:4700::1111', false],
    ['2001:4860:4860::8888', false],
    ['not-an-ip', true],
    ['', true],
  ]
  for (const [ip, expected] of table) {
    assert.equal(isForbiddenAddress(ip, none), expected, ip)
    assert.equal(isForbiddenAddress(ip), expected, `${ip} without an allow list`)
  }
})

test('allowed networks lift the ban, v4, v6 and IPv4-mapped', () => {
  const allowed = parseAllowedNetworks(' 127.0.0.1 , 10.0.0.0/8,fd00::/8,::1')
  for (const ip of ['127.0.0.1', '::ffff:127.0.0.1', '10.200.0.1', 'fd00::5', '::1']) {
    assert.equal(isForbiddenAddress(ip, allowed), false, ip)
  }
  for (const ip of ['127.0.0.2', '192.168.0.1', 'fc00::1', '169.254.169.254', '0.0.0.0']) {
    assert.equal(isForbiddenAddress(ip, allowed), true, ip)
  }
})

test('parseAllowedNetworks refuses malformed entries, naming them', () => {
  for (const text of ['localhost', '1.2.3.4/33', '::1/129', '1.2.3/8', '1.2.3.4/8/1', '1.2.3.4/x', '1.2.3.4/']) {
    assert.throws(() => parseAllowedNetworks(text), (err: Error) => err instanceof RangeError && err.message.includes(text), text)
  }
  assert.doesNotThrow(() => parseAllowedNetworks(''))
  assert.doesNotThrow(() => parseAllowedNetworks('0.0.0.0/0,::/0'))
})

test('URLs: scheme, credentials, length, IP literals in every notation', () => {
  const table: Array<[string, string | undefined]> = [
    ['https://example.com/hooks/orders?x=1', undefined],
    ['http://93.184.216.34:8080/cb', undefined],
    ['http://[2606:4700:4700::1111]/cb', undefined],
    ['ftp://example.com/cb', 'scheme'],
    ['file:///etc/passwd', 'scheme'],
    ['javascript:alert(1)', 'scheme'],
    ['example.com/cb', 'absolute'],
    ['https://user:pw@example.com/', 'credentials'],
    ['https://user@example.com/', 'credentials'],
    [`https://example.com/${'a'.repeat(2048)}`, 'longer'],
    ['http://127.0.0.1:8000/', 'private'],
    ['http://2130706433/', 'private'],
    ['http://0x7f.1/', 'private'],
    ['http://0177.0.0.1/', 'private'],
    ['http://[::1]/', 'private'],
    ['http://[::ffff:127.0.0.1]/', 'private'],
    ['http://[::ffff:a9fe:a9fe]/latest/meta-data', 'private'],
    ['http://169.254.169.254/latest/meta-data', 'private'],
    ['http://0.0.0.0:22/', 'private'],
    ['http://100.64.1.1/', 'private'],
  ]
  for (const [url, reason] of table) {
    const checked = checkCallbackUrl(url, none)
    if (reason === undefined) assert.deepEqual(checked, { ok: true }, url)
    else assert.ok(!checked.ok && checked.reason.includes(reason), `${url}: ${JSON.stringify(checked)}`)
  }
  assert.equal(checkCallbackUrl(`https://example.com/${'a'.repeat(2028)}`, none).ok, true, '2048 characters are fine')
  assert.deepEqual(checkCallbackUrl('http://127.0.0.1:8000/', parseAllowedNetworks('127.0.0.1')), { ok: true })
})

test('resolving: names that reach forbidden addresses are refused, unless allowed', async () => {
  const localhost = await resolveCallbackHost('localhost', none)
  assert.ok(!localhost.ok && /localhost resolves to .*private/.test(localhost.reason), JSON.stringify(localhost))
  assert.deepEqual(await resolveCallbackHost('localhost', parseAllowedNetworks('127.0.0.0/8,::1')), { ok: true })
  assert.deepEqual(await resolveCallbackHost('8.8.8.8', none), { ok: true })
  assert.equal((await resolveCallbackHost('[::1]', none)).ok, false)
  const unknown = await resolveCallbackHost('no-such-host.invalid', none)
  assert.ok(!unknown.ok && unknown.reason.startsWith('cannot resolve no-such-host.invalid'), JSON.stringify(unknown))

  assert.equal((await validateCallbackUrl('http://localhost:9/cb', none)).ok, false)
  assert.deepEqual(await validateCallbackUrl('http://localhost:9/cb', parseAllowedNetworks('127.0.0.1,::1')), { ok: true })
  const scheme = await validateCallbackUrl('gopher://localhost/', none)
  assert.ok(!scheme.ok && scheme.reason.includes('scheme'))
})

test('the guarded lookup answers both forms net.connect asks for', async () => {
  const allowed = parseAllowedNetworks('127.0.0.1,::1')
  const lookupOne = (allow: ReturnType<typeof parseAllowedNetworks>) =>
    new Promise<[Error | null, unknown, unknown]>((resolve) =>
      createGuardedLookup(allow)('localhost', { family: 4 }, (err, address, family) => resolve([err, address, family])),
    )
  assert.deepEqual(await lookupOne(allowed), [null, '127.0.0.1', 4])
  const [err] = await lookupOne(none)
  assert.ok(err instanceof CallbackAddressRefusedError)
  const all = await new Promise<unknown>((resolve, reject) =>
    createGuardedLookup(allowed)('localhost', { all: true, family: 4 }, (e, addresses) => (e ? reject(e) : resolve(addresses))),
  )
  assert.deepEqual(all, [{ address: '127.0.0.1', family: 4 }])
})

let server: Server
let hits = 0
let port = 0

before(async () => {
  server = createServer((req, res) => {
    hits++
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  port = (server.address() as AddressInfo).port
})
after(() => new Promise<void>((resolve) => server.close(() => resolve())))

async function post(url: string, allowed: ReturnType<typeof parseAllowedNetworks>) {
  const agent = createCallbackAgent(allowed, { connectTimeoutMs: 5000 })
  try {
    const response = await request(url, { method: 'POST', body: '{}', dispatcher: agent })
    return { status: response.statusCode, body: await response.body.text() }
  } finally {
    await agent.close()
  }
}

test('delivery connections: 127.0.0.1 is refused before connecting unless allowed (IP literal and name)', async () => {
  for (const host of ['127.0.0.1', 'localhost']) {
    const before = hits
    await assert.rejects(post(`http://${host}:${port}/cb`, none), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CALLBACK_ADDRESS_REFUSED', `${host}: ${err.message}`)
      assert.match(err.message, /(127\.0\.0\.1|::1).*private, loopback or reserved/)
      return true
    })
    assert.equal(hits, before, `${host}: no request reached the server`)

    assert.deepEqual(await post(`http://${host}:${port}/cb`, parseAllowedNetworks('127.0.0.1,::1')), { status: 200, body: 'ok' })
    assert.equal(hits, before + 1, `${host}: allowed, the request arrives`)
  }
})

test('delivery connections: an IPv4-mapped IPv6 literal is refused too', async () => {
  const before = hits
  await assert.rejects(post(`http://[::ffff:127.0.0.1]:${port}/cb`, none), { code: 'ERR_CALLBACK_ADDRESS_REFUSED' })
  assert.equal(hits, before)
})
