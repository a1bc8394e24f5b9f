/**
 * Crash safety of orders, proven with SIGKILL: the verifier and the callback sender are
 * killed again and again while 1,000 orders are in flight. Afterwards each order has
 * exactly one final state and at most one transaction, credit plus holdings at their
 * cost is what it was (every trade is at one fixed price), the Redis projections equal
 * PostgreSQL, and each callback arrived at least once, always under one webhook-id.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql } from 'kysely'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { startCallbackReceiver, type CallbackReceiver } from '../helpers/callback-receiver.ts'
import { testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const ORDERS = 1000
const USERS = 10
const PRICE = 1000 // stock1's latest price in the seeded history
const SCALE = 0.3 // verifications take 0.3 to 24 s (--max-seconds 80); over 18 s is stalled
const TIMEOUT_MS = Math.round(60_000 * SCALE)

let api: TradingApi
let receiver: CallbackReceiver
const running = new Set<ServiceProcess>()
const secrets = new Map<string, string>()

async function totalValue(): Promise<string> {
  const { db } = api.testDb
  const row = await sql<{ total: string }>`select (select coalesce(sum(credit), 0) from users) + (select coalesce(sum(cost), 0) from holdings) as total`.execute(db)
  return row.rows[0]!.total
}

before(async () => {
  api = await openTradingApi()
  const { db } = api.testDb
  const users = await createAccounts(db, Array.from({ length: USERS }, (_, i) => ({ id: `trader${i}`, credit: 200_000 })))
  for (const user of users) await projectUser(api.redis, user)
  // Every trader starts with 20 shares bought at the one price, so sells keep the total.
  await db.insertInto('holdings').values(users.map((u) => ({ user_id: u.id, stock: 'stock1', quantity: 20, cost: 20 * PRICE }))).execute()
  for (const row of await db.selectFrom('users').select(['id', 'webhook_secret']).execute()) secrets.set(row.id, row.webhook_secret)
  receiver = await startCallbackReceiver((user) => secrets.get(user))
  // One callback in ten fails at first, so retries happen across the kills too.
  let n = 0
  receiver.respond = () => (++n % 10 === 0 ? 503 : 204)
})
after(async () => {
  for (const service of running) await service.kill()
  await receiver.close()
  await api.close()
})

test('SIGKILLed verifier and callback sender: one final state per order, money conserved, callbacks at least once', async (t) => {
  const sim = startService(['verify-sim', '--port', '0', '--time-scale', String(SCALE), '--max-seconds', '80', '--seed', '3'], testEnv())
  running.add(sim)
  const [, verifyUrl] = await sim.waitForOutput(/listening on (http:\/\/\S+)/)
  const env = testEnv({
    ...api.testDb.env,
    ORDERS_TOPIC: api.topic,
    VERIFY_URL: verifyUrl!,
    VERIFY_TIMEOUT_MS: String(TIMEOUT_MS),
    CALLBACK_ALLOWED_NETWORKS: '127.0.0.1',
    CALLBACK_RETRY_BASE_MS: '50',
    CALLBACK_RETRY_MAX_MS: '500',
  })
  // A group of its own: a static member of an earlier run's group would hold the partitions.
  const group = uniqueName('crash-verifier')
  const start = {
    verifier: () => startService(['verifier', '--group', group, '--instance-id', `${group}-1`], env),
    sender: () => startService(['callback-sender', '--lease-ms', '1000'], env),
  }
  const before = await totalValue()

  const ids: string[] = []
  const place = async (i: number) => {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/orders',
      headers: api.auth(api.tokens.admin),
      payload: { user: `trader${i % USERS}`, stockname: 'stock1', quantity: 1 + (i % 4), side: i % 3 === 0 ? 'sell' : 'buy', callback_url: receiver.url },
    })
    assert.equal(res.statusCode, 202, res.body)
    ids.push((res.json() as { order_id: string }).order_id)
  }
  // All 1,000 are accepted first, then the services start on them: every order is in
  // flight (acknowledged, not final) when the kills begin.
  for (let i = 0; i < ORDERS; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => place(i + k)))
  const services = { verifier: start.verifier(), sender: start.sender() }
  running.add(services.verifier)
  running.add(services.sender)

  // Kill each service several times at random moments while orders flow.
  const { db } = api.testDb
  const openAtKill: number[] = []
  const countOpen = async () =>
    Number((await db.selectFrom('orders').select(db.fn.countAll<string>().as('n')).where('status', 'in', ['received', 'verifying']).executeTakeFirstOrThrow()).n)
  // Each kill comes once the victim is visibly working (orders finishing, callbacks
  // arriving since it started), at a random moment after that.
  for (let round = 0; round < 8; round++) {
    const victim = round % 2 === 0 ? 'verifier' : 'sender'
    const finalBefore = ORDERS - (await countOpen())
    const receivedBefore = receiver.received.length
    await waitFor(
      async () => (victim === 'verifier' ? ORDERS - (await countOpen()) > finalBefore : receiver.received.length > receivedBefore),
      { timeoutMs: 30_000, what: `${victim} at work` },
    )
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 400))
    openAtKill.push(await countOpen())
    await services[victim].kill()
    running.delete(services[victim])
    services[victim] = start[victim]()
    running.add(services[victim])
  }
  assert.ok(openAtKill.every((n) => n > 0), `orders were in flight at every kill: ${openAtKill.join(', ')}`)
  t.diagnostic(`orders without a final state at each kill: ${openAtKill.join(', ')}`)

  await waitFor(
    async () => {
      const left = await db.selectFrom('orders').select(db.fn.countAll<string>().as('n')).where('status', 'in', ['received', 'verifying']).executeTakeFirstOrThrow()
      return Number(left.n) === 0
    },
    { timeoutMs: 90_000, what: 'every order final' },
  )

  const rows = await db.selectFrom('orders').selectAll().where('user_id', 'like', 'trader%').execute()
  assert.equal(rows.length, ORDERS)
  const txs = await db.selectFrom('transactions').select(['order_id']).execute()
  const perOrder = new Map<string, number>()
  for (const t of txs) perOrder.set(t.order_id, (perOrder.get(t.order_id) ?? 0) + 1)
  let filled = 0
  for (const row of rows) {
    assert.ok(row.status === 'filled' || row.status === 'rejected')
    assert.equal(perOrder.get(row.id) ?? 0, row.status === 'filled' ? 1 : 0, `transactions of order ${row.id}`)
    if (row.status === 'filled') filled++
  }
  assert.ok(filled > 50, `enough trades to matter (${filled})`)
  t.diagnostic(`${filled} filled, ${ORDERS - filled} rejected`)
  assert.equal(await totalValue(), before, 'credit plus holdings at cost is conserved')

  for (const user of await db.selectFrom('users').select(['id', 'credit']).where('id', 'like', 'trader%').execute()) {
    assert.equal(JSON.parse((await api.redis.get(user.id))!).credit, Number(user.credit), `projection of ${user.id}`)
  }

  await waitFor(
    () => {
      const delivered = new Set(receiver.received.filter((c) => c.verified).map((c) => c.orderId))
      return ids.every((id) => delivered.has(id))
    },
    { timeoutMs: 60_000, what: 'a callback for every order' },
  )
  const deliveries = new Map((await db.selectFrom('webhook_deliveries').select(['id', 'order_id']).execute()).map((d) => [d.order_id, d.id]))
  const byOrder = new Map(rows.map((r) => [r.id, r]))
  for (const callback of receiver.received) {
    assert.ok(callback.verified, 'every callback is signed')
    assert.equal(callback.webhookId, deliveries.get(callback.orderId), 'always the same webhook-id')
    assert.equal(callback.status, byOrder.get(callback.orderId)?.status)
  }
  t.diagnostic(`${receiver.received.length} callbacks received for ${ORDERS} orders (retries and resends after kills included)`)
})
