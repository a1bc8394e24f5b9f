/**
 * Orders end to end, over HTTP, with every service a real process except the API:
 * `verify-sim` on a fast time scale (1-100 s become 10 ms-1 s, so the 60 s stall limit is
 * 600 ms), the verifier and the callback sender, on the real Kafka, Redis and PostgreSQL.
 * Every order reaches exactly one final state, every callback arrives signed, stalled
 * verifications end `verification_timeout` at the scaled limit.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { startCallbackReceiver, type CallbackReceiver } from '../helpers/callback-receiver.ts'
import { testEnv, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const SCALE = 0.01
const TIMEOUT_MS = Math.round(60_000 * SCALE)

let api: TradingApi
let receiver: CallbackReceiver
const services: ServiceProcess[] = []
const secrets = new Map<string, string>()

before(async () => {
  api = await openTradingApi()
  for (const user of ['user1', 'user2']) {
    const row = await api.testDb.db.selectFrom('users').select('webhook_secret').where('id', '=', user).executeTakeFirstOrThrow()
    secrets.set(user, row.webhook_secret)
  }
  receiver = await startCallbackReceiver((user) => secrets.get(user))
})
after(async () => {
  for (const service of services) await service.kill()
  await receiver.close()
  await api.close()
})

test('every order reaches one final state, callbacks arrive signed, stalls end verification_timeout', async () => {
  const sim = startService(['verify-sim', '--port', '0', '--time-scale', String(SCALE), '--fail-rate', '0.1', '--seed', '7'], testEnv())
  services.push(sim)
  const [, verifyUrl] = await sim.waitForOutput(/listening on (http:\/\/\S+)/)
  const env = testEnv({
    ...api.testDb.env,
    ORDERS_TOPIC: api.topic,
    VERIFY_URL: verifyUrl!,
    VERIFY_TIMEOUT_MS: String(TIMEOUT_MS),
    CALLBACK_ALLOWED_NETWORKS: '127.0.0.1',
  })
  services.push(startService(['verifier'], env), startService(['callback-sender'], env))

  const address = await api.app.listen({ port: 0, host: '127.0.0.1' })
  const orders = [
    ...Array.from({ length: 60 }, (_, i) => ({ token: api.tokens.user1, body: { user: 'user1', stockname: 'stock1', quantity: 1 + (i % 3), side: 'buy' } })),
    ...Array.from({ length: 20 }, () => ({ token: api.tokens.user2, body: { user: 'user2', stockname: 'stock1', quantity: 1, side: 'buy' } })),
    ...Array.from({ length: 10 }, () => ({ token: api.tokens.user2, body: { user: 'user2', stockname: 'stock2', quantity: 5, side: 'sell' } })),
    ...Array.from({ length: 20 }, () => ({ token: api.tokens.user1, body: { user: 'user1', stockname: 'nostock', quantity: 1, side: 'buy' } })),
  ]
  const ids = await Promise.all(
    orders.map(async ({ token, body }) => {
      const res = await fetch(`${address}/api/orders`, {
        method: 'POST',
        headers: { ...api.auth(token), 'content-type': 'application/json' },
        body: JSON.stringify({ ...body, callback_url: receiver.url }),
      })
      assert.equal(res.status, 202, await res.clone().text())
      return ((await res.json()) as { order_id: string }).order_id
    }),
  )

  // One order watched through its event stream, from the start.
  const stream = fetch(`${address}/api/orders/${ids[0]}/events`, { headers: api.auth(api.tokens.user1) }).then((r) => r.text())

  const { db } = api.testDb
  await waitFor(
    async () => {
      const open = await db.selectFrom('orders').select(db.fn.countAll<string>().as('n')).where('status', 'in', ['received', 'verifying']).executeTakeFirstOrThrow()
      return Number(open.n) === 0
    },
    { timeoutMs: 60_000, what: 'every order final' },
  )
  const rows = await db.selectFrom('orders').selectAll().where('id', 'in', ids).execute()
  assert.equal(rows.length, ids.length)
  const transactions = await db.selectFrom('transactions').select(['order_id']).execute()
  const txCount = new Map<string, number>()
  for (const t of transactions) txCount.set(t.order_id, (txCount.get(t.order_id) ?? 0) + 1)
  const reasons = new Map<string, number>()
  for (const row of rows) {
    assert.ok(row.status === 'filled' || row.status === 'rejected', row.status)
    assert.equal(txCount.get(row.id) ?? 0, row.status === 'filled' ? 1 : 0, `transactions of ${row.id}`)
    const key = row.status === 'filled' ? 'filled' : row.reason!
    reasons.set(key, (reasons.get(key) ?? 0) + 1)
    if (row.reason === 'verification_timeout') {
      const waited = row.finished_at!.getTime() - row.verification_started_at!.getTime()
      assert.ok(waited >= TIMEOUT_MS - 5, `a stalled verification ended after ${waited} ms, before the ${TIMEOUT_MS} ms limit`)
      assert.ok(waited < TIMEOUT_MS + 2000, `a stalled verification ended ${waited} ms after it started`)
    }
    if (row.stock === 'nostock' && row.status === 'rejected' && row.reason !== 'verification_timeout' && row.reason !== 'verification_failed') {
      assert.equal(row.reason, 'unknown_stock')
    }
  }
  for (const reason of ['filled', 'verification_timeout', 'verification_failed', 'unknown_stock', 'insufficient_holdings', 'insufficient_credit']) {
    assert.ok((reasons.get(reason) ?? 0) > 0, `some orders ended ${reason}: ${JSON.stringify([...reasons])}`)
  }

  // Each order's callback arrives, signed, with its final state, under one webhook-id.
  await waitFor(() => new Set(receiver.received.map((c) => c.orderId)).size === ids.length, { timeoutMs: 30_000, what: 'every callback' })
  const byOrder = new Map(rows.map((r) => [r.id, r]))
  const webhookIds = new Map<string, Set<string>>()
  for (const callback of receiver.received) {
    assert.ok(callback.verified, `signature of ${callback.webhookId}`)
    const row = byOrder.get(callback.orderId)!
    assert.equal(callback.status, row.status)
    assert.equal(callback.reason, row.reason)
    const set = webhookIds.get(callback.orderId) ?? new Set()
    set.add(callback.webhookId)
    webhookIds.set(callback.orderId, set)
  }
  for (const set of webhookIds.values()) assert.equal(set.size, 1)

  // The Redis projection follows PostgreSQL.
  for (const user of ['user1', 'user2']) {
    const row = await db.selectFrom('users').select('credit').where('id', '=', user).executeTakeFirstOrThrow()
    assert.equal(JSON.parse((await api.redis.get(user))!).credit, Number(row.credit))
  }
  // The event stream ended with the final state.
  const events = (await stream).split('\n\n').filter((e) => e.startsWith('event: status'))
  const last = JSON.parse(events.at(-1)!.split('data: ')[1]!) as { status: string }
  assert.equal(last.status, byOrder.get(ids[0]!)!.status)
})
