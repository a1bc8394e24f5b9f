/**
 * Every trading route over HTTP (`app.inject`) on the real Redis, Kafka and PostgreSQL:
 * answers, each 4xx, authentication (none, wrong user, admin) and the rate limit.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { sql } from 'kysely'
import { API_SECURITY_HEADERS } from '../../src/platform/http/app.ts'
import { decodeOrderMessage } from '../../src/trading/order-message.ts'
import { finishOrder } from '../../src/trading/order-execution.ts'
import { readTopic } from '../helpers/topic-reader.ts'
import { openTradingApi, seeded, type TradingApi } from '../helpers/trading.ts'

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

type Json = Record<string, unknown>
const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  api.app.inject({ method: 'POST', url, payload: payload as Json, headers })
const get = (url: string, headers: Record<string, string> = {}) => api.app.inject({ method: 'GET', url, headers })
const errorOf = (res: { json: () => unknown }) => (res.json() as { error: { code: string; message: string; details?: unknown } }).error

describe('health', () => {
  it('GET /readyz checks Redis, PostgreSQL and the Kafka producer; GET /livez and /health answer', async () => {
    const res = await get('/readyz')
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as { status: string; checks: Record<string, Array<{ status: string; observedUnit: string }>> }
    assert.equal(body.status, 'pass')
    assert.deepEqual(Object.keys(body.checks).sort(), ['kafka:responseTime', 'postgres:responseTime', 'redis:responseTime'])
    assert.ok(Object.values(body.checks).every(([check]) => check?.status === 'pass' && check.observedUnit === 'ms'))
    assert.equal((await get('/livez')).statusCode, 200)
    assert.deepEqual((await get('/health')).json(), { status: 'ok' })
  })
})

describe('POST /api/buy-stock', () => {
  const url = '/api/buy-stock'
  it('accepts when the credit covers price x quantity, from Redis, debiting nothing', async () => {
    const res = await post(url, { user: 'user1', stockname: 'stock1', quantity: 100 }, api.auth(api.tokens.user1))
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), { decision: 'Accept', price: 1000, cost: 100_000, credit: 100_000 })
    assert.deepEqual(JSON.parse((await api.redis.get('user1'))!), { id: 1, credit: 100_000 })
  })
  it('denies one share beyond the credit', async () => {
    const res = await post(url, { user: 'user1', stockname: 'stock1', quantity: 101 }, api.auth(api.tokens.user1))
    assert.equal(res.statusCode, 200)
    assert.equal((res.json() as Json).decision, 'Deny')
  })
  it('uses the latest non-empty price and reads a credit changed in Redis', async () => {
    await api.redis.set('user2', JSON.stringify({ id: 2, credit: 25 }))
    const res = await post(url, { user: 'user2', stockname: 'stock2', quantity: 2 }, api.auth(api.tokens.user2))
    assert.deepEqual(res.json(), { decision: 'Accept', price: 12.5, cost: 25, credit: 25 })
    await api.redis.set('user2', JSON.stringify({ id: 2, credit: seeded.users.user2 }))
  })
  it('answers 404 for an unknown user or stock, naming it', async () => {
    const unknownStock = await post(url, { user: 'user1', stockname: 'nope', quantity: 1 }, api.auth(api.tokens.user1))
    assert.equal(unknownStock.statusCode, 404)
    assert.deepEqual(errorOf(unknownStock).details, { field: 'body.stockname' })
    const unknownUser = await post(url, { user: 'ghost', stockname: 'stock1', quantity: 1 }, api.auth(api.tokens.admin))
    assert.equal(unknownUser.statusCode, 404)
    assert.match(errorOf(unknownUser).message, /ghost/)
  })
  it('answers 400 naming the field for bad quantities, wrong types and extra fields', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ user: 'user1', stockname: 'stock1', quantity: 0 }, /quantity/],
      [{ user: 'user1', stockname: 'stock1', quantity: -5 }, /quantity/],
      [{ user: 'user1', stockname: 'stock1', quantity: 1.5 }, /quantity/],
      [{ user: 'user1', stockname: 'stock1', quantity: 1_000_000_001 }, /quantity/],
      [{ user: 'user1', stockname: 'stock1', quantity: '5' }, /quantity/],
      [{ user: 'user1', stockname: 'stock1' }, /quantity/],
      [{ user: 1, stockname: 'stock1', quantity: 1 }, /user/],
      [{ user: 'user1', stockname: 'stock1', quantity: 1, extra: true }, /extra/],
    ]
    for (const [body, field] of cases) {
      const res = await post(url, body, api.auth(api.tokens.user1))
      assert.equal(res.statusCode, 400, JSON.stringify(body))
      const error = errorOf(res)
      assert.equal(error.code, 'validation_failed')
      assert.match(JSON.stringify(error.details), field, JSON.stringify(body))
    }
  })
  it('answers 401 without a token or with an unknown one, 403 for another user, and lets an admin act for anyone', async () => {
    const body = { user: 'user1', stockname: 'stock1', quantity: 1 }
    const none = await post(url, body)
    assert.equal(none.statusCode, 401)
    assert.equal(errorOf(none).code, 'unauthorized')
    assert.match(String(none.headers['www-authenticate']), /^Bearer/)
    assert.equal((await post(url, body, api.auth('bourse_unknown'))).statusCode, 401)
    const wrong = await post(url, body, api.auth(api.tokens.user2))
    assert.equal(wrong.statusCode, 403)
    assert.equal(errorOf(wrong).code, 'forbidden')
    assert.equal((await post(url, body, api.auth(api.tokens.admin))).statusCode, 200)
  })
})

describe('orders', () => {
  const order = { user: 'user1', stockname: 'stock1', quantity: 3, side: 'buy' }

  it('POST /api/orders answers 202 at once and sends the order to Kafka', async () => {
    const res = await post('/api/orders', order, api.auth(api.tokens.user1))
    assert.equal(res.statusCode, 202, res.body)
    const body = res.json() as { order_id: string; status: string; status_url: string }
    assert.equal(body.status, 'received')
    assert.equal(body.status_url, `/api/orders/${body.order_id}`)
    assert.equal(res.headers.location, body.status_url)
    const messages = (await readTopic(api.topic)).flat()
    const sent = messages.find((m) => m.key === body.order_id)
    assert.ok(sent, 'the order is in the topic')
    const decoded = decodeOrderMessage(sent.value!)
    assert.deepEqual([decoded.user, decoded.stock, decoded.side, decoded.quantity], ['user1', 'stock1', 'buy', 3])
    const stored = await get(body.status_url, api.auth(api.tokens.user1))
    assert.equal(stored.statusCode, 200)
    assert.equal((stored.json() as Json).status, 'received')
  })

  it('an Idempotency-Key retry returns the same order, never a second one; another body with it is 409', async () => {
    const headers = { ...api.auth(api.tokens.user1), 'idempotency-key': 'retry-me-1' }
    const first = await post('/api/orders', order, headers)
    const second = await post('/api/orders', order, headers)
    assert.equal(first.statusCode, 202)
    assert.equal(second.statusCode, 202)
    assert.equal((second.json() as Json).order_id, (first.json() as Json).order_id)
    assert.equal(second.headers['idempotent-replayed'], 'true')
    const rows = await api.testDb.db.selectFrom('orders').select('id').where('idempotency_key', '=', 'retry-me-1').execute()
    assert.equal(rows.length, 1)
    const other = await post('/api/orders', { ...order, quantity: 4 }, headers)
    assert.equal(other.statusCode, 409)
    assert.equal(errorOf(other).code, 'idempotency_key_reused')
    // The same key for another user is another order.
    const user2 = await post('/api/orders', { ...order, user: 'user2' }, { ...api.auth(api.tokens.user2), 'idempotency-key': 'retry-me-1' })
    assert.equal(user2.statusCode, 202)
    assert.notEqual((user2.json() as Json).order_id, (first.json() as Json).order_id)
  })

  it('refuses callback URLs to private addresses unless allowed, and bad ones', async () => {
    const cases: Array<[string, number]> = [
      ['http://10.0.0.5/hook', 400],
      ['http://169.254.169.254/latest/meta-data', 400],
      ['http://[::1]:8080/hook', 400],
      ['ftp://example.com/hook', 400],
      ['http://user:pw@127.0.0.1/hook', 400],
      ['http://127.0.0.1:9/hook', 202],
    ]
    for (const [callback_url, status] of cases) {
      const res = await post('/api/orders', { ...order, callback_url }, api.auth(api.tokens.user1))
      assert.equal(res.statusCode, status, `${callback_url}: ${res.body}`)
      if (status === 400) assert.equal(errorOf(res).code, 'invalid_callback_url')
    }
  })

  it('answers 400/401/403/404 for bad orders, missing auth, another user and unknown users', async () => {
    assert.equal((await post('/api/orders', { ...order, side: 'short' }, api.auth(api.tokens.user1))).statusCode, 400)
    assert.equal((await post('/api/orders', { ...order, quantity: 0 }, api.auth(api.tokens.user1))).statusCode, 400)
    const badKey = await post('/api/orders', order, { ...api.auth(api.tokens.user1), 'idempotency-key': 'x'.repeat(300) })
    assert.equal(badKey.statusCode, 400)
    assert.equal((await post('/api/orders', order)).statusCode, 401)
    assert.equal((await post('/api/orders', order, api.auth(api.tokens.user2))).statusCode, 403)
    const ghost = await post('/api/orders', { ...order, user: 'ghost' }, api.auth(api.tokens.admin))
    assert.equal(ghost.statusCode, 404)
  })

  it('GET /api/orders/{id}: 404 unknown, 400 not a uuid, 403 for another user, admin sees it', async () => {
    const placed = (await post('/api/orders', order, api.auth(api.tokens.user1))).json() as { order_id: string }
    assert.equal((await get(`/api/orders/${placed.order_id}`, api.auth(api.tokens.admin))).statusCode, 200)
    assert.equal((await get(`/api/orders/${placed.order_id}`, api.auth(api.tokens.user2))).statusCode, 403)
    assert.equal((await get(`/api/orders/${placed.order_id}`)).statusCode, 401)
    assert.equal((await get('/api/orders/00000000-0000-4000-8000-000000000000', api.auth(api.tokens.user1))).statusCode, 404)
    assert.equal((await get('/api/orders/not-a-uuid', api.auth(api.tokens.user1))).statusCode, 400)
  })

  it('GET /api/orders pages newest first with a cursor, every order exactly once', async () => {
    for (let i = 0; i < 7; i++) await post('/api/orders', { ...order, user: 'user2', quantity: i + 1 }, api.auth(api.tokens.user2))
    const seen: number[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? '' : `&cursor=${cursor}`
      const res = await get(`/api/orders?limit=3${query}`, api.auth(api.tokens.user2))
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { items: Array<{ quantity: number; user: string }>; next_cursor: string | null }
      for (const item of page.items) {
        assert.equal(item.user, 'user2')
        seen.push(item.quantity)
      }
      cursor = page.next_cursor
      pages++
    } while (cursor !== null)
    assert.deepEqual(seen.slice(0, 7), [7, 6, 5, 4, 3, 2, 1])
    assert.ok(pages >= 3)
    assert.equal((await get('/api/orders?user=user1', api.auth(api.tokens.user2))).statusCode, 403)
    assert.equal((await get('/api/orders?cursor=garbage', api.auth(api.tokens.user2))).statusCode, 400)
    assert.equal((await get('/api/orders?limit=0', api.auth(api.tokens.user2))).statusCode, 400)
    assert.equal((await get('/api/orders?limit=3&bogus=1', api.auth(api.tokens.user2))).statusCode, 400)
    const all = (await get('/api/orders?limit=200', api.auth(api.tokens.admin))).json() as { items: Array<{ user: string }> }
    assert.ok(new Set(all.items.map((o) => o.user)).size >= 2, 'an admin sees every user')
  })

  it('GET /api/orders/{id}/events streams the status until the final state', async () => {
    const placed = (await post('/api/orders', order, api.auth(api.tokens.user1))).json() as { order_id: string }
    const address = await api.app.listen({ port: 0, host: '127.0.0.1' })
    const res = await fetch(`${address}/api/orders/${placed.order_id}/events`, { headers: api.auth(api.tokens.user1) })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
    // The stream is written past Fastify (a hijacked reply), yet keeps the headers every answer has.
    for (const [name, value] of Object.entries(API_SECURITY_HEADERS)) {
      if (name === 'cache-control') assert.match(res.headers.get(name) ?? '', /\bno-store\b/)
      else assert.equal(res.headers.get(name), value, name)
    }
    for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) {
      assert.match(res.headers.get(name) ?? '', /^\d+$/, name)
    }
    assert.equal(res.headers.get('x-ratelimit-limit'), api.config.RATE_LIMIT_MAX.toString())
    const reading = res.text()
    // Finish the order as the verifier would, then publish its view.
    const { publishOrderStatus } = await import('../../src/trading/order-events.ts')
    const { orderView } = await import('../../src/trading/order-view.ts')
    const done = await finishOrder(api.testDb.db, placed.order_id, { verified: true, price: 1000 }, { retryForMs: 1000, schema: api.testDb.schema })
    await publishOrderStatus(api.redis, orderView(done.order))
    const text = await reading
    const events = text.split('\n\n').filter((e) => e.startsWith('event: status'))
    const statuses = events.map((e) => (JSON.parse(e.split('data: ')[1]!) as { status: string }).status)
    assert.deepEqual(statuses, ['received', 'filled'])
    const notFound = await fetch(`${address}/api/orders/00000000-0000-4000-8000-000000000000/events`, { headers: api.auth(api.tokens.user1) })
    assert.equal(notFound.status, 404)
    assert.equal((await fetch(`${address}/api/orders/${placed.order_id}/events`, { headers: api.auth(api.tokens.user2) })).status, 403)
  })
})

describe('accounts', () => {
  it('GET /api/users/{user}: credit and holdings valued at the latest price', async () => {
    await api.testDb.db.insertInto('holdings').values({ user_id: 'user2', stock: 'stock2', quantity: 4, cost: 40 }).execute()
    const res = await get('/api/users/user2', api.auth(api.tokens.user2))
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), {
      user: 'user2',
      credit: seeded.users.user2,
      holdings: [{ stockname: 'stock2', quantity: 4, cost: 40, price: 12.5, value: 50 }],
      holdings_value: 50,
    })
    assert.equal((await get('/api/users/user2', api.auth(api.tokens.user1))).statusCode, 403)
    assert.equal((await get('/api/users/user2')).statusCode, 401)
    assert.equal((await get('/api/users/ghost', api.auth(api.tokens.admin))).statusCode, 404)
    assert.equal((await get('/api/users/bad%20name', api.auth(api.tokens.admin))).statusCode, 400)
  })

  it('GET /api/users/{user}/transactions pages newest first', async () => {
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const placed = (await post('/api/orders', { user: 'user1', stockname: 'stock2', quantity: i + 1, side: 'buy' }, api.auth(api.tokens.user1))).json() as { order_id: string }
      await finishOrder(api.testDb.db, placed.order_id, { verified: true, price: 12.5 }, { retryForMs: 1000, schema: api.testDb.schema })
      ids.push(placed.order_id)
    }
    const first = (await get('/api/users/user1/transactions?limit=2', api.auth(api.tokens.user1))).json() as {
      items: Array<{ order_id: string; amount: number }>
      next_cursor: string | null
    }
    assert.deepEqual(first.items.map((t) => t.order_id), [ids[2], ids[1]])
    assert.equal(first.items[0]!.amount, 37.5)
    assert.ok(first.next_cursor)
    const second = (await get(`/api/users/user1/transactions?limit=2&cursor=${first.next_cursor}`, api.auth(api.tokens.user1))).json() as {
      items: Array<{ order_id: string }>
    }
    assert.equal(second.items[0]!.order_id, ids[0])
    assert.equal((await get('/api/users/user1/transactions', api.auth(api.tokens.user2))).statusCode, 403)
    assert.equal((await get('/api/users/ghost/transactions', api.auth(api.tokens.admin))).statusCode, 404)
    assert.equal((await get('/api/users/user1/transactions?cursor=AAAA', api.auth(api.tokens.user1))).statusCode, 400)
  })

  it('GET /api/users/{user}/webhook-secret is the owner\'s only', async () => {
    const res = await get('/api/users/user1/webhook-secret', api.auth(api.tokens.user1))
    assert.equal(res.statusCode, 200)
    assert.match((res.json() as { secret: string }).secret, /^whsec_/)
    assert.equal((await get('/api/users/user1/webhook-secret', api.auth(api.tokens.user2))).statusCode, 403)
    assert.equal((await get('/api/users/ghost/webhook-secret', api.auth(api.tokens.admin))).statusCode, 404)
  })
})

describe('callback dead letters', () => {
  it('are listed for their user and replayed once', async () => {
    const placed = (await post('/api/orders', { user: 'user2', stockname: 'stock2', quantity: 1, side: 'buy', callback_url: 'http://127.0.0.1:9/hook' }, api.auth(api.tokens.user2))).json() as { order_id: string }
    await finishOrder(api.testDb.db, placed.order_id, { verified: false, reason: 'verification_failed' }, { retryForMs: 1000, schema: api.testDb.schema })
    await api.testDb.db.updateTable('webhook_deliveries').set({ status: 'dead', attempts: 3, last_error: 'connect ECONNREFUSED' }).where('order_id', '=', placed.order_id).execute()
    const list = await get('/api/webhooks/dead-letters', api.auth(api.tokens.user2))
    assert.equal(list.statusCode, 200, list.body)
    const page = list.json() as { items: Array<{ id: string; order_id: string; attempts: number; payload: { type: string } }> }
    assert.equal(page.items.length, 1)
    assert.equal(page.items[0]!.order_id, placed.order_id)
    assert.equal(page.items[0]!.payload.type, 'order.rejected')
    const id = page.items[0]!.id
    assert.deepEqual((await get('/api/webhooks/dead-letters', api.auth(api.tokens.user1))).json(), { items: [], next_cursor: null })
    assert.equal((await get('/api/webhooks/dead-letters?user=user2', api.auth(api.tokens.user1))).statusCode, 403)
    assert.equal((await post(`/api/webhooks/dead-letters/${id}/replay`, undefined, api.auth(api.tokens.user1))).statusCode, 404)
    const replay = await post(`/api/webhooks/dead-letters/${id}/replay`, undefined, api.auth(api.tokens.user2))
    assert.equal(replay.statusCode, 202, replay.body)
    const row = await api.testDb.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
    assert.equal(row.status, 'pending')
    assert.equal((await post(`/api/webhooks/dead-letters/${id}/replay`, undefined, api.auth(api.tokens.user2))).statusCode, 404)
    assert.equal((await post('/api/webhooks/dead-letters/nope/replay', undefined, api.auth(api.tokens.admin))).statusCode, 400)
  })
})

describe('the API around the routes', () => {
  it('serves /health and the OpenAPI document with every route and an example', async () => {
    assert.deepEqual((await get('/health')).json(), { status: 'ok' })
    const doc = (await get('/docs/json')).json() as { paths: Record<string, Record<string, { requestBody?: unknown; security?: unknown }>> }
    for (const path of ['/api/buy-stock', '/api/orders', '/api/orders/{id}', '/api/orders/{id}/events', '/api/users/{user}', '/api/users/{user}/transactions']) {
      assert.ok(doc.paths[path], path)
    }
    assert.match(JSON.stringify(doc.paths['/api/buy-stock']), /"stockname":"stock1"/)
    assert.ok(doc.paths['/api/orders']!.post!.security)
    assert.equal((await get('/docs')).statusCode < 400, true)
  })
  it('rate-limits each token on its own: 429 with Retry-After', async () => {
    const limited = await openTradingApi({ RATE_LIMIT_MAX: '5' })
    try {
      const body = { user: 'user1', stockname: 'stock1', quantity: 1 }
      const statuses: number[] = []
      for (let i = 0; i < 6; i++) {
        statuses.push((await limited.app.inject({ method: 'POST', url: '/api/buy-stock', payload: body, headers: limited.auth(limited.tokens.user1) })).statusCode)
      }
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429])
      const refused = await limited.app.inject({ method: 'POST', url: '/api/buy-stock', payload: body, headers: limited.auth(limited.tokens.user1) })
      assert.equal(refused.statusCode, 429)
      assert.ok(Number(refused.headers['retry-after']) >= 1)
      assert.equal(errorOf(refused).code, 'rate_limited')
      const other = await limited.app.inject({ method: 'POST', url: '/api/buy-stock', payload: { ...body, user: 'user2' }, headers: limited.auth(limited.tokens.user2) })
      assert.equal(other.statusCode, 200, 'another token has its own budget')
    } finally {
      await limited.close()
    }
  })
  it('never answers with a stack trace or an internal message', async () => {
    await sql`alter table holdings rename to holdings_gone`.execute(api.testDb.db)
    try {
      const res = await get('/api/users/user1', api.auth(api.tokens.user1))
      assert.equal(res.statusCode, 500)
      assert.deepEqual(Object.keys(errorOf(res)).sort(), ['code', 'message'])
      assert.doesNotMatch(res.body, /holdings|relation|at |\.ts/)
    } finally {
      await sql`alter table holdings_gone rename to holdings`.execute(api.testDb.db)
    }
  })
})
