/**
 * The trading API against hostile callers, over HTTP on the real stack: SSRF through
 * callback URLs, token isolation between users, oversized and malformed bodies, and no
 * stack trace or internal message in any answer.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { revokeApiToken, createApiToken } from '../../src/auth/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import { finishOrder } from '../../src/trading/order-execution.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

let api: TradingApi
const responses: string[] = []

before(async () => {
  api = await openTradingApi({ BODY_LIMIT_BYTES: '4096', CALLBACK_ALLOWED_NETWORKS: '' })
})
after(async () => {
  await api.close()
})

async function call(method: 'GET' | 'POST', url: string, options: { token?: string; payload?: string; headers?: Record<string, string> } = {}) {
  const res = await api.app.inject({
    method,
    url,
    headers: { ...(options.token && api.auth(options.token)), ...(options.payload !== undefined && { 'content-type': 'application/json' }), ...options.headers },
    ...(options.payload !== undefined && { payload: options.payload }),
  })
  responses.push(res.body)
  return res
}
const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code

describe('SSRF', () => {
  it('refuses callback URLs reaching loopback, private, link-local or metadata addresses', async () => {
    const urls = [
      'http://127.0.0.1:8000/api/users/user1',
      'http://localhost:6379/',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://10.1.2.3/',
      'http://172.16.0.1/',
      'http://192.168.1.1/',
      'http://169.254.169.254/latest/meta-data/',
      'http://100.64.0.1/',
      'http://0.0.0.0/',
      'http://2130706433/',
      'http://0x7f000001/',
      'gopher://example.com/',
      'file:///etc/passwd',
    ]
    for (const callback_url of urls) {
      const res = await call('POST', '/api/orders', {
        token: api.tokens.user1,
        payload: JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy', callback_url }),
      })
      assert.equal(res.statusCode, 400, `${callback_url}: ${res.body}`)
      assert.equal(code(res), 'invalid_callback_url', callback_url)
    }
    const orders = await api.testDb.db.selectFrom('orders').select('id').execute()
    assert.equal(orders.length, 0, 'nothing was stored for a refused order')
  })
})

describe('token isolation', () => {
  it("a user's token reaches nothing of another user; an admin token reaches all; a revoked token nothing", async () => {
    const placed = await call('POST', '/api/orders', {
      token: api.tokens.user2,
      payload: JSON.stringify({ user: 'user2', stockname: 'stock2', quantity: 1, side: 'buy' }),
    })
    assert.equal(placed.statusCode, 202, placed.body)
    const orderId = (placed.json() as { order_id: string }).order_id
    await finishOrder(api.testDb.db, orderId, { verified: true, price: 12.5 }, { retryForMs: 1000, schema: api.testDb.schema })
    const theirs: Array<['GET' | 'POST', string, string?]> = [
      ['GET', `/api/orders/${orderId}`],
      ['GET', `/api/orders/${orderId}/events`],
      ['GET', '/api/orders?user=user2'],
      ['GET', '/api/users/user2'],
      ['GET', '/api/users/user2/transactions'],
      ['GET', '/api/users/user2/webhook-secret'],
      ['GET', '/api/webhooks/dead-letters?user=user2'],
      ['POST', '/api/buy-stock', JSON.stringify({ user: 'user2', stockname: 'stock1', quantity: 1 })],
      ['POST', '/api/orders', JSON.stringify({ user: 'user2', stockname: 'stock1', quantity: 1, side: 'sell' })],
    ]
    for (const [method, url, payload] of theirs) {
      const res = await call(method, url, { token: api.tokens.user1, ...(payload !== undefined && { payload }) })
      assert.equal(res.statusCode, 403, `${method} ${url}: ${res.body}`)
      assert.doesNotMatch(res.body, /whsec_|12\.5|credit/, 'nothing of theirs leaks in the refusal')
      const admin = await call(method, url.endsWith('/events') ? `/api/orders/${orderId}` : url, { token: api.tokens.admin, ...(payload !== undefined && { payload }) })
      assert.ok(admin.statusCode < 300, `admin ${method} ${url}: ${admin.statusCode}`)
    }
    // Their own list shows only their orders.
    const mine = (await call('GET', '/api/orders', { token: api.tokens.user1 })).json() as { items: Array<{ user: string }> }
    assert.ok(mine.items.every((o) => o.user === 'user1'))

    // An application's event-intake token is no user's: it reaches no trading data.
    const eventsApp = await createApp(api.testDb.db, 'security-test-app')
    for (const url of ['/api/orders', '/api/webhooks/dead-letters', '/api/users/user1', `/api/orders/${orderId}`]) {
      assert.equal((await call('GET', url, { token: eventsApp.token })).statusCode, 403, url)
    }

    const { id, token } = await createApiToken(api.testDb.db, { userId: 'user1' })
    assert.equal((await call('GET', '/api/users/user1', { token })).statusCode, 200)
    await revokeApiToken(api.testDb.db, id)
    const revoked = await call('GET', '/api/users/user1', { token })
    assert.equal(revoked.statusCode, 401)
    assert.equal((await call('GET', '/api/users/user1', { token: `${api.tokens.user1}x` })).statusCode, 401)
    assert.equal((await call('GET', '/api/users/user1', { headers: { authorization: `Basic ${Buffer.from('user1:pw').toString('base64')}` } })).statusCode, 401)
  })
})

describe('bodies', () => {
  it('answers 413 for a body over the limit, reading none of it into an order', async () => {
    const huge = JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy', callback_url: `https://example.com/${'a'.repeat(5000)}` })
    const res = await call('POST', '/api/orders', { token: api.tokens.user1, payload: huge })
    assert.equal(res.statusCode, 413)
    assert.equal(code(res), 'payload_too_large')
  })
  it('answers 400 malformed_json for broken JSON, and 415 for other media types', async () => {
    for (const payload of ['{', '{"user": "user1",}', 'null', '[]', '"text"', '{"user": "user1" "x": 1}']) {
      const res = await call('POST', '/api/buy-stock', { token: api.tokens.user1, payload })
      assert.equal(res.statusCode, 400, `${payload}: ${res.body}`)
      assert.ok(['malformed_json', 'validation_failed'].includes(code(res)), payload)
    }
    assert.equal(code(await call('POST', '/api/buy-stock', { token: api.tokens.user1, payload: '{' })), 'malformed_json')
    const text = await call('POST', '/api/buy-stock', { token: api.tokens.user1, payload: 'user=user1', headers: { 'content-type': 'text/plain' } })
    assert.equal(text.statusCode, 415)
  })
  it('ignores prototype-pollution keys: refused as unknown fields, nothing polluted', async () => {
    const res = await call('POST', '/api/buy-stock', {
      token: api.tokens.user1,
      payload: '{"user":"user1","stockname":"stock1","quantity":1,"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}}}',
    })
    assert.equal(res.statusCode, 400)
    assert.equal(({} as Record<string, unknown>).admin, undefined)
  })
})

describe('answers', () => {
  it('never carry a stack trace, a file path or an internal error message', () => {
    assert.ok(responses.length > 30)
    for (const body of responses) {
      assert.doesNotMatch(body, /\bat [\w.<>]+ \(|node:internal|\/src\/|\.ts:\d+|stack|ECONNREFUSED|relation "/i, body)
    }
  })
})
