/**
 * The BTC orders API over HTTP (`app.inject`) on the real PostgreSQL and Redis: placing
 * orders at the cached quote, every refusal (400s naming their field, 401, 403, 404, 409,
 * 503 with Retry-After for a stale or missing quote), idempotency, ownership, keyset
 * paging, the price route, and 500 concurrent orders racing for the last 1 BTC of the cap.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { sql } from 'kysely'
import { createApiToken } from '../../src/auth/index.ts'
import { btcAmount } from '../../src/btc/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import { createAccounts } from '../../src/trading/index.ts'
import { openBtcApi, writeQuote } from '../helpers/btc-api.ts'
import type { TradingApi } from '../helpers/trading.ts'

const CAP = '10'
const PRICES = { EUR: '50000.00', GBP: '42000.123456', USD: '61234.50' }

let api: TradingApi
let appToken: string
before(async () => {
  api = await openBtcApi({ BTC_CAP: CAP, BTC_PRICE_MAX_AGE_MS: '60000' })
  appToken = (await createApp(api.testDb.db, 'btc-test-app')).token
})
after(async () => {
  await api.close()
})
beforeEach(async () => {
  await writeQuote(api.redis, { EUR: { price: PRICES.EUR }, GBP: { price: PRICES.GBP }, USD: { price: PRICES.USD } })
})

interface ErrorBody {
  error: { code: string; message: string; details?: unknown }
}
interface OrderBody {
  id: string
  user_id: string
  currency: string
  amount: string
  btc_price: string
  btc_amount: string
  price_source: string
  price_fetched_at: string
  created_at: string
}

const errorOf = (res: { json: () => unknown }) => (res.json() as ErrorBody).error

function order(token: string, body: unknown, headers: Record<string, string> = {}) {
  return api.app.inject({
    method: 'POST',
    url: '/api/btc/orders',
    headers: { ...api.auth(token), 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

async function resetOrders(): Promise<void> {
  await sql`delete from btc_orders`.execute(api.testDb.db)
  await sql`update btc_totals set btc_total = 0`.execute(api.testDb.db)
}

describe('POST /api/btc/orders', () => {
  it('prices an order at the cached quote, rounding toward zero', async () => {
    const res = await order(api.tokens.user1, { currency: 'USD', amount: 100 })
    assert.equal(res.statusCode, 201, res.body)
    const body = res.json() as OrderBody
    assert.equal(body.amount, '100.00')
    assert.equal(body.btc_price, PRICES.USD)
    assert.equal(body.btc_amount, '0.00163306')
    assert.equal(body.btc_amount, btcAmount('100', PRICES.USD))
    assert.equal(body.price_source, 'coinbase')
    assert.equal(body.user_id, 'user1')
    assert.equal(res.headers.location, `/api/btc/orders/${body.id}`)
  })

  it('keeps a JSON number as written and accepts a decimal string', async () => {
    const a = await order(api.tokens.user1, '{"currency":"GBP","amount":0.10}')
    assert.equal(a.statusCode, 201, a.body)
    assert.equal((a.json() as OrderBody).amount, '0.10')
    assert.equal((a.json() as OrderBody).btc_amount, btcAmount('0.10', PRICES.GBP))
    const b = await order(api.tokens.user1, { currency: 'EUR', amount: '999999999.99' })
    // Far beyond the cap: refused, but as a valid amount.
    assert.equal(b.statusCode, 409, b.body)
  })

  it('refuses bad bodies with 400 naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{ currency: 'EUR', amount: 0 }, 'body.amount'],
      [{ currency: 'EUR', amount: '-1' }, 'body.amount'],
      [{ currency: 'EUR', amount: 1000000000 }, 'body.amount'],
      [{ currency: 'EUR', amount: '1.001' }, 'body.amount'],
      [{ currency: 'EUR', amount: 'ten' }, 'body.amount'],
      [{ currency: 'EUR', amount: true }, 'body.amount'],
      [{ currency: 'EUR' }, 'body.amount'],
      [{ currency: 'CHF', amount: 10 }, 'body.currency'],
      [{ amount: 10 }, 'body.currency'],
      [{ currency: 'EUR', amount: 10, extra: 1 }, 'body'],
    ]
    for (const [body, field] of cases) {
      const res = await order(api.tokens.user1, body)
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`)
      const details = (errorOf(res).details ?? []) as Array<{ field: string }>
      assert.ok(details.some((d) => d.field.startsWith(field)), `${JSON.stringify(body)}: ${res.body}`)
    }
    const exponent = await order(api.tokens.user1, '{"currency":"EUR","amount":1e3}')
    assert.equal(exponent.statusCode, 400)
    assert.equal(errorOf(exponent).code, 'validation_failed')
    const notJson = await order(api.tokens.user1, '{"currency":')
    assert.equal(notJson.statusCode, 400)
  })

  it('refuses an amount buying less than 1 satoshi, naming the smallest that buys one, and stores nothing', async () => {
    await resetOrders()
    await writeQuote(api.redis, { EUR: { price: '1500000.00' } })
    const res = await order(api.tokens.user1, { currency: 'EUR', amount: '0.01' })
    assert.equal(res.statusCode, 400, res.body)
    assert.equal(errorOf(res).code, 'amount_too_small')
    assert.deepEqual(errorOf(res).details, [{ field: 'body.amount', message: 'buys 0 BTC at the current price: the smallest amount is 0.02 EUR' }])
    const smallest = await order(api.tokens.user1, { currency: 'EUR', amount: '0.02' })
    assert.equal(smallest.statusCode, 201, smallest.body)
    assert.equal((smallest.json() as OrderBody).btc_amount, '0.00000001')
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from btc_orders`.execute(api.testDb.db)
    assert.equal(rows[0]!.n, 1)
  })

  it('refuses a bad Idempotency-Key', async () => {
    const res = await order(api.tokens.user1, { currency: 'EUR', amount: 10 }, { 'idempotency-key': 'a b' })
    assert.equal(res.statusCode, 400)
    assert.deepEqual(errorOf(res).details, { field: 'headers.idempotency-key' })
  })

  it('needs a token, and a user token', async () => {
    const none = await api.app.inject({ method: 'POST', url: '/api/btc/orders', payload: { currency: 'EUR', amount: 10 } })
    assert.equal(none.statusCode, 401)
    assert.equal((await order(api.tokens.admin, { currency: 'EUR', amount: 10 })).statusCode, 403)
    assert.equal((await order(appToken, { currency: 'EUR', amount: 10 })).statusCode, 403)
  })

  it('answers 503 with Retry-After for a stale, missing, garbled or future quote', async () => {
    await writeQuote(api.redis, { EUR: { price: PRICES.EUR, fetchedAt: new Date(Date.now() - 61_000) }, USD: { price: PRICES.USD } })
    const stale = await order(api.tokens.user1, { currency: 'EUR', amount: 10 })
    assert.equal(stale.statusCode, 503, stale.body)
    assert.ok(Number(stale.headers['retry-after']) > 0)
    const missing = await order(api.tokens.user1, { currency: 'GBP', amount: 10 })
    assert.equal(missing.statusCode, 503)
    assert.equal((await order(api.tokens.user1, { currency: 'USD', amount: 10 })).statusCode, 201)
    await api.redis.set('bourse:btc:quote', '{"EUR": {"price": 50000, "source": "x", "fetched_at": "now"}}')
    assert.equal((await order(api.tokens.user1, { currency: 'EUR', amount: 10 })).statusCode, 503)
    await api.redis.set('bourse:btc:quote', 'not json')
    assert.equal((await order(api.tokens.user1, { currency: 'EUR', amount: 10 })).statusCode, 503)
    await writeQuote(api.redis, null)
    assert.equal((await order(api.tokens.user1, { currency: 'EUR', amount: 10 })).statusCode, 503)
    await writeQuote(api.redis, { EUR: { price: PRICES.EUR, fetchedAt: new Date(Date.now() + 3_600_000) } })
    assert.equal((await order(api.tokens.user1, { currency: 'EUR', amount: 10 })).statusCode, 503, 'a quote from the future')
  })

  it('replays an order under the same Idempotency-Key at the same price, and refuses the key with another body', async () => {
    const key = { 'idempotency-key': 'btc-retry-1' }
    const first = await order(api.tokens.user1, { currency: 'EUR', amount: '25.5' }, key)
    assert.equal(first.statusCode, 201)
    await writeQuote(api.redis, { EUR: { price: '70000' } })
    const again = await order(api.tokens.user1, { currency: 'EUR', amount: 25.5 }, key)
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.headers['idempotent-replayed'], 'true')
    assert.deepEqual(again.json(), first.json())
    const other = await order(api.tokens.user1, { currency: 'EUR', amount: 26 }, key)
    assert.equal(other.statusCode, 409)
    assert.equal(errorOf(other).code, 'idempotency_key_reused')
    // The key is the user's own: another user may use it.
    assert.equal((await order(api.tokens.user2, { currency: 'EUR', amount: 26 }, key)).statusCode, 201)
  })

  it('places one order for concurrent requests under one key', async () => {
    const key = { 'idempotency-key': 'btc-concurrent' }
    const answers = await Promise.all(Array.from({ length: 20 }, () => order(api.tokens.user2, { currency: 'USD', amount: 7 }, key)))
    const ids = new Set(answers.map((res) => (res.json() as OrderBody).id))
    assert.equal(ids.size, 1)
    assert.ok(answers.every((res) => res.statusCode === 201 || res.statusCode === 200))
  })
})

describe('the cap', () => {
  it('keeps one totals row: a second one is refused', async () => {
    await assert.rejects(sql`insert into btc_totals (id, btc_total) values (false, 0)`.execute(api.testDb.db))
    await assert.rejects(sql`insert into btc_totals default values`.execute(api.testDb.db))
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from btc_totals`.execute(api.testDb.db)
    assert.equal(rows[0]!.n, 1)
  })

  it('refuses an order that would cross it with 409 btc_cap_exceeded and the BTC available', async () => {
    await resetOrders()
    await sql`update btc_totals set btc_total = 9.5`.execute(api.testDb.db)
    const res = await order(api.tokens.user1, { currency: 'EUR', amount: '25000.01' })
    assert.equal(res.statusCode, 409)
    assert.equal(errorOf(res).code, 'btc_cap_exceeded')
    assert.deepEqual(errorOf(res).details, { btc_available: '0.50000000' })
    const exact = await order(api.tokens.user1, { currency: 'EUR', amount: '25000' })
    assert.equal(exact.statusCode, 201)
    const full = await order(api.tokens.user1, { currency: 'EUR', amount: '0.01' })
    assert.deepEqual(errorOf(full).details, { btc_available: '0.00000000' })
  })

  it('lets 500 concurrent orders of many users take at most the last 1 BTC, each decided at a total the orders reached', async () => {
    await resetOrders()
    // The cap less 1 BTC is taken by one earlier order.
    await sql`
      insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at)
      values (gen_random_uuid(), 'user1', 'EUR', 450000, 50000, 9, 9, 'coinbase', now())
    `.execute(api.testDb.db)
    await sql`update btc_totals set btc_total = 9`.execute(api.testDb.db)
    const users = Array.from({ length: 50 }, (_, i) => `racer${i}`)
    await createAccounts(api.testDb.db, users.map((id) => ({ id, credit: 0 })))
    const tokens = await Promise.all(users.map(async (userId) => (await createApiToken(api.testDb.db, { userId })).token))
    // 500 orders of 200.00 to 699.00 EUR (0.004 to 0.01398 BTC each): about a hundred fit.
    const amounts = Array.from({ length: 500 }, (_, i) => `${200 + i}.00`)
    const answers = await Promise.all(amounts.map((amount, i) => order(tokens[i % tokens.length]!, { currency: 'EUR', amount })))
    const accepted = answers.filter((res) => res.statusCode === 201).map((res) => res.json() as OrderBody)
    const refused = answers.flatMap((res, i) => (res.statusCode === 409 ? [{ amount: amounts[i]!, error: errorOf(res) }] : []))
    assert.equal(accepted.length + refused.length, 500, answers.find((res) => res.statusCode !== 201 && res.statusCode !== 409)?.body)
    assert.ok(accepted.length > 0 && refused.length > 0)
    const satoshis = (text: string) => BigInt(text.replace('.', ''))
    const cap = 1_000_000_000n

    // The order the database admitted the accepted ones in: each row keeps the total it
    // took the cap to. Replayed from the earlier 9 BTC, each step adds exactly its order's
    // amount and stays within the cap.
    const { rows: chain } = await sql<{ id: string; btc_amount: string; btc_total_after: string }>`
      select id, btc_amount::text, btc_total_after::text from btc_orders where amount <> 450000 order by btc_total_after
    `.execute(api.testDb.db)
    assert.deepEqual(chain.map((row) => row.id).sort(), accepted.map((body) => body.id).sort())
    const reached = [900_000_000n]
    for (const row of chain) {
      const before = reached.at(-1)!
      assert.equal(satoshis(row.btc_total_after), before + satoshis(row.btc_amount), `order ${row.id} starts where the one before it ended`)
      assert.ok(satoshis(row.btc_total_after) <= cap)
      reached.push(satoshis(row.btc_total_after))
    }
    // Each refused order was decided at a total in that sequence, and crossed the cap there.
    for (const { amount, error } of refused) {
      assert.equal(error.code, 'btc_cap_exceeded')
      const available = satoshis((error.details as { btc_available: string }).btc_available)
      assert.ok(reached.includes(cap - available), `${amount}: refused at a total (${cap - available}) the orders never reached`)
      assert.ok(satoshis(btcAmount(amount, PRICES.EUR)) > available, `${amount}: refused though it fitted in ${available}`)
    }
    // The totals row is the table's sum and the last total reached.
    const { rows } = await sql<{ total: string; table_sum: string }>`
      select (select btc_total::text from btc_totals) as total, (select sum(btc_amount)::numeric(20, 8)::text from btc_orders) as table_sum
    `.execute(api.testDb.db)
    assert.equal(rows[0]!.total, rows[0]!.table_sum)
    assert.equal(satoshis(rows[0]!.total), reached.at(-1))
    assert.ok(satoshis(rows[0]!.total) <= cap)
  })
})

describe('reading orders', () => {
  it('pages a user\'s orders newest first; an admin sees everyone\'s; another user\'s order is 404', async () => {
    await resetOrders()
    const ids: string[] = []
    for (let i = 0; i < 7; i++) {
      const res = await order(api.tokens.user1, { currency: 'EUR', amount: `${i + 1}.00` })
      ids.push((res.json() as OrderBody).id)
    }
    const theirs = (await order(api.tokens.user2, { currency: 'EUR', amount: 1 })).json() as OrderBody
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const url: string = `/api/btc/orders?limit=3${cursor ? `&cursor=${cursor}` : ''}`
      const res = await api.app.inject({ method: 'GET', url, headers: api.auth(api.tokens.user1) })
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { items: OrderBody[]; next_cursor: string | null }
      seen.push(...page.items.map((item) => item.id))
      cursor = page.next_cursor
    } while (cursor !== null)
    assert.deepEqual(seen, [...ids].reverse())

    const all = await api.app.inject({ method: 'GET', url: '/api/btc/orders?limit=200', headers: api.auth(api.tokens.admin) })
    assert.equal((all.json() as { items: OrderBody[] }).items.length, 8)

    const mine = await api.app.inject({ method: 'GET', url: `/api/btc/orders/${ids[0]}`, headers: api.auth(api.tokens.user1) })
    assert.equal(mine.statusCode, 200)
    assert.equal((mine.json() as OrderBody).id, ids[0])
    const other = await api.app.inject({ method: 'GET', url: `/api/btc/orders/${theirs.id}`, headers: api.auth(api.tokens.user1) })
    assert.equal(other.statusCode, 404)
    const admin = await api.app.inject({ method: 'GET', url: `/api/btc/orders/${theirs.id}`, headers: api.auth(api.tokens.admin) })
    assert.equal(admin.statusCode, 200)
  })

  it('refuses a bad id, cursor or limit with 400 and an application token with 403', async () => {
    const get = (url: string, token = api.tokens.user1) => api.app.inject({ method: 'GET', url, headers: api.auth(token) })
    assert.equal((await get('/api/btc/orders/not-a-uuid')).statusCode, 400)
    const cursor = await get('/api/btc/orders?cursor=bogus')
    assert.equal(cursor.statusCode, 400)
    assert.equal(errorOf(cursor).code, 'invalid_cursor')
    assert.equal((await get('/api/btc/orders?limit=0')).statusCode, 400)
    assert.equal((await get('/api/btc/orders?limit=201')).statusCode, 400)
    assert.equal((await get('/api/btc/orders', appToken)).statusCode, 403)
    assert.equal((await get('/api/btc/orders/00000000-0000-4000-8000-000000000000', appToken)).statusCode, 403)
    assert.equal((await get('/api/btc/orders/00000000-0000-4000-8000-000000000000')).statusCode, 404)
    assert.equal((await api.app.inject({ method: 'GET', url: '/api/btc/orders' })).statusCode, 401)
  })
})

describe('GET /api/btc/price', () => {
  it('shows each cached quote with its age, null for none', async () => {
    const fetchedAt = new Date(Date.now() - 90_000)
    await writeQuote(api.redis, { EUR: { price: PRICES.EUR, source: 'coingecko', fetchedAt }, USD: { price: PRICES.USD } })
    const res = await api.app.inject({ method: 'GET', url: '/api/btc/price', headers: api.auth(api.tokens.user1) })
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as Record<string, { price: string; source: string; fetched_at: string; age_ms: number; stale: boolean } | null | number>
    const eur = body.EUR as { price: string; source: string; fetched_at: string; age_ms: number; stale: boolean }
    assert.equal(eur.price, PRICES.EUR)
    assert.equal(eur.source, 'coingecko')
    assert.equal(eur.fetched_at, fetchedAt.toISOString())
    assert.ok(eur.age_ms >= 90_000)
    assert.equal(eur.stale, true)
    assert.equal((body.USD as { stale: boolean }).stale, false)
    assert.equal(body.GBP, null)
    assert.equal(body.max_age_ms, 60_000)
  })
})

describe('the OpenAPI document', () => {
  it('documents the BTC routes under the tag btc, states the rounding rule, and secures every route', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
      paths: Record<string, Record<string, { tags?: string[]; security?: unknown[]; description?: string }>>
    }
    const paths = Object.keys(doc.paths).filter((p) => p.startsWith('/api/btc'))
    assert.deepEqual(paths.sort(), ['/api/btc/orders', '/api/btc/orders/{id}', '/api/btc/price'])
    for (const path of paths) {
      for (const [method, op] of Object.entries(doc.paths[path]!)) {
        assert.deepEqual(op.tags, ['btc'], `${method} ${path}`)
        assert.deepEqual(op.security, [{ bearer: [] }], `${method} ${path}`)
      }
    }
    assert.match(doc.paths['/api/btc/orders']!.post!.description!, /cut to 8 decimals toward zero \(ROUND_DOWN\)/)
  })
})
