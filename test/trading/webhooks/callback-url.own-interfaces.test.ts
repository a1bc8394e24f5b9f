/**
 * The host's own interface addresses were accepted as callback targets: a callback to
 * this machine's LAN or public address reaches every service of it listening on all
 * interfaces, as loopback would. They are refused (unless allowed) at order time and
 * when a delivery connects.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import {
  checkCallbackUrl,
  createCallbackAgent,
  interfaceAddresses,
  isForbiddenAddress,
  parseAllowedNetworks,
  resolveCallbackHost,
  validateCallbackUrl,
} from '../../../src/trading/webhooks/callback-url.ts'

const none = parseAllowedNetworks('')
/** A host whose interfaces have public addresses. */
const publicHost = () => ['127.0.0.1', '::1', '8.8.8.8', '2606:4700:4700::1111']
const literal = (ip: string) => (ip.includes(':') ? `[${ip}]` : ip)

test("a host's own addresses are forbidden, in every notation, unless allowed", () => {
  for (const ip of ['8.8.8.8', '::ffff:8.8.8.8', '::ffff:808:808', '2606:4700:4700::1111', '2606:4700:4700:0:0:0:0:1111']) {
    assert.equal(isForbiddenAddress(ip, none, publicHost), true, ip)
  }
  assert.equal(isForbiddenAddress('8.8.4.4', none, publicHost), false, 'another public address')
  assert.equal(isForbiddenAddress('8.8.8.8', parseAllowedNetworks('8.8.8.8'), publicHost), false, 'allowed')
  assert.equal(isForbiddenAddress('2606:4700:4700::1111', parseAllowedNetworks('2606:4700::/32'), publicHost), false, 'allowed network')
})

test('order time: URLs and names reaching an own address are refused', async () => {
  assert.equal(checkCallbackUrl('http://8.8.8.8/cb', none, publicHost).ok, false)
  assert.equal((await validateCallbackUrl('http://[2606:4700:4700::1111]/cb', none, publicHost)).ok, false)
  assert.equal((await resolveCallbackHost('8.8.8.8', none, publicHost)).ok, false)
  assert.equal((await validateCallbackUrl('http://8.8.4.4/cb', none, publicHost)).ok, true)
})

test("this machine's real interface addresses are all refused without an allow list", async () => {
  const own = interfaceAddresses()
  assert.ok(own.length > 0)
  for (const ip of own) {
    assert.equal(isForbiddenAddress(ip, none), true, ip)
    assert.equal((await validateCallbackUrl(`http://${literal(ip)}:8080/cb`, none)).ok, false, ip)
  }
})

let server: Server
let port = 0
let hits = 0
before(async () => {
  server = createServer((req, res) => {
    hits++
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  // On every interface, as services often listen.
  server.listen(0, '::')
  await once(server, 'listening')
  port = (server.address() as AddressInfo).port
})
after(() => new Promise<void>((resolve) => server.close(() => resolve())))

test('send time: a delivery to an own address never connects', async () => {
  const agent = createCallbackAgent(none, { connectTimeoutMs: 2000 })
  try {
    // Link-local addresses need a zone, which a URL cannot carry.
    for (const ip of interfaceAddresses().filter((a) => !a.startsWith('fe80:'))) {
      const before = hits
      await assert.rejects(
        request(`http://${literal(ip)}:${port}/cb`, { method: 'POST', body: '{}', dispatcher: agent }),
        { code: 'ERR_CALLBACK_ADDRESS_REFUSED' },
        ip,
      )
      assert.equal(hits, before, `${ip}: nothing reached the server`)
    }
  } finally {
    await agent.close()
  }
  const injected = createCallbackAgent(none, { connectTimeoutMs: 2000, hostAddresses: publicHost })
  try {
    await assert.rejects(request('http://8.8.8.8:9/cb', { method: 'POST', body: '{}', dispatcher: injected }), { code: 'ERR_CALLBACK_ADDRESS_REFUSED' })
  } finally {
    await injected.close()
  }
})
