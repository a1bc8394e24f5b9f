/**
 * Orders once the broker is known to be down, on a broker of the test's own: after the
 * first refusal, each order is answered 503 with `Retry-After` at once instead of after
 * the producer's retries (about 2,500 ms before the fix), nothing is stored for a refused
 * order, and the same API takes orders again by itself once the broker is back.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { waitFor } from '../helpers/infra.ts'
import { type OwnKafka, startOwnKafka } from '../helpers/own-kafka.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

/**
 * Longest answer once the broker is known down. The producer's retries take about
 * 2,500 ms (10 x 250 ms); a refusal that does not wait for them takes a few ms, and the
 * bound leaves room for a busy two-core machine.
 */
const FAST_MS = 1000

let kafka: OwnKafka | undefined
let api: TradingApi | undefined

before(async () => {
  kafka = await startOwnKafka()
  api = await openTradingApi({ KAFKA_BROKERS: kafka.broker })
})
after(async () => {
  try {
    await api?.close()
  } finally {
    await kafka?.destroy()
  }
})

test('broker SIGKILLed: once known down, orders are refused with 503 in well under the producer retries; 202 again after the restart', async (t) => {
  assert.ok(api && kafka)
  const { app, auth, tokens, testDb } = api
  const place = async () => {
    const startedAt = performance.now()
    const res = await app.inject({
      method: 'POST',
      url: '/api/orders',
      headers: auth(tokens.user1),
      payload: { user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy' },
    })
    return { status: res.statusCode, ms: performance.now() - startedAt, retryAfter: res.headers['retry-after'], body: res.body }
  }
  const orders = async () => (await testDb.db.selectFrom('orders').select('id').execute()).length

  assert.equal((await place()).status, 202)
  await kafka.kill()

  // The first refusal may wait for the producer's retries; then the broker is known down.
  const first = await waitFor(async () => {
    const outcome = await place()
    return outcome.status === 503 ? outcome : undefined
  }, { timeoutMs: 30_000, what: 'a 503 after the kill' })
  t.diagnostic(`first 503 after ${Math.round(first.ms)} ms`)
  const stored = await orders()

  const refused = []
  for (let i = 0; i < 5; i++) refused.push(await place())
  for (const outcome of refused) {
    assert.equal(outcome.status, 503, outcome.body)
    assert.equal(outcome.retryAfter, '5')
    assert.equal((JSON.parse(outcome.body) as { error: { code: string } }).error.code, 'service_unavailable')
  }
  const slowest = Math.max(...refused.map((o) => o.ms))
  t.diagnostic(`5 refusals once known down, the slowest after ${Math.round(slowest)} ms`)
  assert.ok(slowest < FAST_MS, `a refusal took ${Math.round(slowest)} ms once the broker was known down`)
  assert.equal(await orders(), stored, 'a refused order is not stored')

  // Back: the same API takes orders again without a restart, and stores them.
  await kafka.restart()
  const accepted = await waitFor(async () => {
    const outcome = await place()
    return outcome.status === 202 ? outcome : undefined
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'a 202 after the restart' })
  const { order_id: id } = JSON.parse(accepted.body) as { order_id: string }
  assert.ok(await testDb.db.selectFrom('orders').select('id').where('id', '=', id).executeTakeFirst())
})
