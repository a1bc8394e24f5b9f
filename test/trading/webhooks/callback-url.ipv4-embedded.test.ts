/**
 * IPv6 forms that carry an IPv4 address (NAT64, 6to4, IPv4-translated) or are not
 * globally reachable (Teredo, local-use NAT64, the discard prefix, documentation) were
 * accepted as callback targets: `64:ff9b::7f00:1` reaches 127.0.0.1 through a NAT64
 * translator, `2002:a9fe:a9fe::1` a metadata endpoint through 6to4. They are refused when
 * the order is placed and again when a delivery connects.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import {
  createCallbackAgent,
  createGuardedLookup,
  isForbiddenAddress,
  parseAllowedNetworks,
  validateCallbackUrl,
} from '../../../src/trading/webhooks/callback-url.ts'
import { endOffsets } from '../../helpers/topic-reader.ts'
import { openTradingApi, type TradingApi } from '../../helpers/trading.ts'

const none = parseAllowedNetworks('')

/** Refused: what they reach, or where they are, is not a public host. */
const refused = [
  '64:ff9b::7f00:1', // NAT64 of 127.0.0.1
  '64:ff9b::127.0.0.1',
  '64:ff9b::a9fe:a9fe', // NAT64 of 169.254.169.254
  '64:ff9b::a00:1', // NAT64 of 10.0.0.1
  '64:ff9b:1::808:808', // local-use NAT64: not globally reachable
  '64:ff9b:1:abcd::7f00:1',
  '2002:7f00:1::', // 6to4 of 127.0.0.1
  '2002:a9fe:a9fe::1', // 6to4 of 169.254.169.254
  '2002:c0a8:101:1::1', // 6to4 of 192.168.1.1
  '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo
  '2001::1',
  '::ffff:0:7f00:1', // IPv4-translated 127.0.0.1
  '::ffff:0:a9fe:a9fe',
  '::ffff:0:0:0',
  '100::1', // discard prefix
  '100::ffff:7f00:1',
  '2001:db8::1', // documentation
  '3fff::1',
  '5f00::1', // outside global unicast
  '192.0.2.10', // documentation IPv4
  '198.51.100.1',
  '203.0.113.5',
]
/** Still accepted: public hosts, directly or through a public embedding. */
const accepted = ['8.8.8.8', '64:ff9b::808:808', '64:ff9b::8.8.4.4', '2002:808:808::1', '::ffff:8.8.8.8', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e']

test('IPv6 addresses embedding a forbidden IPv4 address, and reserved IPv6 prefixes, are forbidden', () => {
  for (const ip of refused) assert.equal(isForbiddenAddress(ip, none), true, ip)
  for (const ip of accepted) assert.equal(isForbiddenAddress(ip, none), false, ip)
  // The allow list is read on the IPv4 address carried, as for an IPv4-mapped one.
  assert.equal(isForbiddenAddress('64:ff9b::7f00:1', parseAllowedNetworks('127.0.0.1')), false)
  assert.equal(isForbiddenAddress('2002:7f00:1::', parseAllowedNetworks('127.0.0.1')), false)
})

test('order time: the URL check refuses them', async () => {
  for (const ip of refused) {
    const host = ip.includes(':') ? `[${ip}]` : ip
    const checked = await validateCallbackUrl(`http://${host}:8080/cb`, none)
    assert.ok(!checked.ok && checked.reason.includes('private, loopback or reserved'), `${ip}: ${JSON.stringify(checked)}`)
  }
})

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

test('order time: POST /api/orders answers 400 invalid_callback_url and queues nothing', async () => {
  const sum = async () => (await endOffsets(api.topic)).reduce((a, b) => a + b, 0n)
  const offsets = await sum()
  // The test API allows 127.0.0.1 (its local receivers): other embedded addresses.
  for (const ip of ['64:ff9b::a9fe:a9fe', '2002:a00:1::1', '::ffff:0:c0a8:101', '100::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2']) {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/orders',
      headers: { ...api.auth(api.tokens.user1), 'content-type': 'application/json' },
      payload: JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy', callback_url: `http://[${ip}]:8080/cb` }),
    })
    assert.equal(res.statusCode, 400, `${ip}: ${res.body}`)
    assert.equal((res.json() as { error: { code: string } }).error.code, 'invalid_callback_url', ip)
  }
  assert.equal(await sum(), offsets)
})

test('send time: the delivery connector refuses them before connecting', async () => {
  const agent = createCallbackAgent(none, { connectTimeoutMs: 2000 })
  try {
    for (const ip of ['64:ff9b::7f00:1', '2002:a9fe:a9fe::1', '::ffff:0:7f00:1', '100::1', '2001::1', '64:ff9b:1::808:808']) {
      await assert.rejects(request(`http://[${ip}]:8080/cb`, { method: 'POST', body: '{}', dispatcher: agent }), { code: 'ERR_CALLBACK_ADDRESS_REFUSED' }, ip)
    }
  } finally {
    await agent.close()
  }
})

test('send time: the guarded lookup refuses a name resolving to them', async () => {
  // The system resolver answers a literal with itself: the same path as a name's addresses.
  for (const ip of ['64:ff9b::7f00:1', '2002:7f00:1::', '::ffff:0:a9fe:a9fe']) {
    const err = await new Promise<Error | null>((resolve) => createGuardedLookup(none)(ip, { all: true }, (e) => resolve(e)))
    assert.equal((err as (Error & { code?: string }) | null)?.code, 'ERR_CALLBACK_ADDRESS_REFUSED', ip)
  }
})
