/**
 * `bourse verifier` and `bourse verify-sim` as real processes: the verifier is killed
 * with SIGKILL three times while orders are verifying, then finishes the rest. Every
 * order must end in exactly one final state, with at most one transaction and one
 * callback, and credit plus holdings at cost must be what it was.
 */
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { sql } from 'kysely'
import { createStockHistoryRepository } from '../../src/market/index.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createProducer } from '../../src/platform/kafka/clients.ts'
import { projectUser } from '../../src/trading/index.ts'
import { encodeOrderMessage, type OrderMessage } from '../../src/trading/order-message.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, createTestTopic, openTestRedis, runCli, testConfig, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'

const ORDERS = 400
const USERS = 20
const CREDIT = 10_000
const KILLS = 3
/** verify-sim answers in 5 ms to 500 ms; 300 ms is the scaled 60 s stall limit. */
const SCALE = 0.005
const TIMEOUT_MS = 300

let testDb: TestDb
let redis: Redis
const topic = uniqueName('orders-verifier')
const running = new Set<ServiceProcess>()
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  testDb = await openTestDb()
  redis = await openTestRedis()
  cleanups.push(await createTestTopic(topic, 3))
  await createStockHistoryRepository(redis).seedStock('stock1', { id: 1, price: [100], time: ['09:00'], performance: 0 })
})
after(async () => {
  for (const service of running) await service.kill()
  // Each step on its own: a topic that fails to delete must not leave connections open.
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch (err) {
      console.warn('cleanup failed', err)
    }
  }
  await closeTestRedis(redis)
  await testDb.close()
})

function orderMessage(user: string, side: 'buy' | 'sell', quantity: number, callback: boolean): OrderMessage {
  const id = randomUUID()
  return {
    v: 1,
    id,
    user,
    stock: 'stock1',
    side,
    quantity,
    callback_url: callback ? 'http://127.0.0.1:9/hooks' : null,
    idempotency_key: null,
    request_hash: createHash('sha256').update(id).digest('hex'),
    created_at: new Date().toISOString(),
  }
}

async function countByStatus(): Promise<Map<string, number>> {
  const rows = await testDb.db
    .selectFrom('orders')
    .select(['status', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('status')
    .execute()
  return new Map(rows.map((r) => [r.status, Number(r.n)]))
}

async function finalCount(): Promise<number> {
  const counts = await countByStatus()
  return (counts.get('filled') ?? 0) + (counts.get('rejected') ?? 0)
}

async function totalValue(): Promise<string> {
  const { rows } = await sql<{ total: string }>`
    select (select coalesce(sum(credit), 0) from users) + (select coalesce(sum(cost), 0) from holdings) as total
  `.execute(testDb.db)
  return rows[0]!.total
}

test('bad options exit 2 naming the option', async () => {
  const [sim, verifier] = await Promise.all([
    runCli(['verify-sim', '--time-scale', '0']),
    runCli(['verifier', '--max-in-flight', '0'], testEnv(testDb.env)),
  ])
  assert.equal(sim.code, 2)
  assert.match(sim.stderr, /--time-scale must be a number greater than 0/)
  assert.equal(verifier.code, 2)
  assert.match(verifier.stderr, /--max-in-flight must be a whole number/)
})

test(`verifier SIGKILLed ${KILLS} times mid-flight: one final state per order, money conserved`, async () => {
  const users = Array.from({ length: USERS }, (_, i) => `user${i + 1}`)
  const created = await testDb.db
    .insertInto('users')
    .values(users.map((id, i) => ({ id, contract_id: i + 1, credit: CREDIT, webhook_secret: 'whsec_dGVzdA==' })))
    .returningAll()
    .execute()
  for (const user of created) await projectUser(redis, user)
  const before = await totalValue()

  const sim = startService(['verify-sim', '--port', '0', '--time-scale', String(SCALE), '--fail-rate', '0.1', '--seed', '11'], testEnv())
  running.add(sim)
  const [, verifyUrl] = await sim.waitForOutput(/^verify-sim listening on (http:\/\/\S+\/verify)$/m)

  // Buys and sells at the one price: a sell takes its shares' average cost (the price)
  // out of holdings and puts the same amount into credit, so the total is conserved.
  const orders = Array.from({ length: ORDERS }, (_, i) =>
    orderMessage(users[i % USERS]!, i % 4 === 3 ? 'sell' : 'buy', 1 + (i % 5), i % 2 === 0),
  )
  const producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
  try {
    await producer.send({ messages: orders.map((o) => ({ topic, key: o.id, value: encodeOrderMessage(o) })) })
  } finally {
    await producer.close()
  }

  const env = testEnv({ ...testDb.env, ORDERS_TOPIC: topic, VERIFY_URL: verifyUrl!, VERIFY_TIMEOUT_MS: String(TIMEOUT_MS) })
  const group = uniqueName('verifier-crash')
  // Few in flight, so the orders take long enough to be killed among; a static member id
  // gives each restart its partitions back at once.
  const args = ['verifier', '--group', group, '--instance-id', 'crash-1', '--max-in-flight', '25']
  let killedMidFlight = 0
  for (let kill = 1; kill <= KILLS; kill++) {
    const verifier = startService(args, env)
    running.add(verifier)
    const target = Math.round((ORDERS * kill) / (KILLS + 1))
    await waitFor(async () => (await finalCount()) >= target, { timeoutMs: 30_000, what: `${target} final orders` })
    await verifier.kill()
    running.delete(verifier)
    if (((await countByStatus()).get('verifying') ?? 0) > 0) killedMidFlight++
  }
  assert.ok(killedMidFlight > 0, 'at least one kill left orders verifying')

  const last = startService(args, env)
  running.add(last)
  await waitFor(async () => (await finalCount()) === ORDERS, { timeoutMs: 30_000, what: 'every order final' })
  assert.equal(await last.stop(), 0, `a graceful stop exits 0:\n${last.output()}`)
  running.delete(last)

  const rows = await testDb.db.selectFrom('orders').selectAll().execute()
  assert.equal(rows.length, ORDERS)
  const transactions = await testDb.db.selectFrom('transactions').selectAll().execute()
  const deliveries = await testDb.db.selectFrom('webhook_deliveries').select(['order_id', 'event_type']).execute()
  const txByOrder = Map.groupBy(transactions, (t) => t.order_id)
  const deliveriesByOrder = Map.groupBy(deliveries, (d) => d.order_id)
  const reasons = new Map<string, number>()
  for (const row of rows) {
    assert.ok(row.status === 'filled' || row.status === 'rejected', `order ${row.id} is ${row.status}`)
    assert.equal(txByOrder.get(row.id)?.length ?? 0, row.status === 'filled' ? 1 : 0, `transactions of ${row.id}`)
    const expectedDeliveries = row.callback_url === null ? [] : [`order.${row.status}`]
    assert.deepEqual((deliveriesByOrder.get(row.id) ?? []).map((d) => d.event_type), expectedDeliveries, `callbacks of ${row.id}`)
    const key = row.reason ?? 'filled'
    reasons.set(key, (reasons.get(key) ?? 0) + 1)
  }
  for (const outcome of ['filled', 'verification_timeout', 'verification_failed']) {
    assert.ok((reasons.get(outcome) ?? 0) > 0, `some orders ended ${outcome}: ${JSON.stringify(Object.fromEntries(reasons))}`)
  }
  assert.equal(await totalValue(), before, 'credit plus holdings at cost is conserved')

  // Each user's credit and holding follow from their transactions, and Redis shows PostgreSQL.
  const holdings = await testDb.db.selectFrom('holdings').selectAll().execute()
  for (const user of await testDb.db.selectFrom('users').selectAll().execute()) {
    const mine = transactions.filter((t) => t.user_id === user.id)
    const spent = mine.reduce((sum, t) => sum + (t.side === 'buy' ? 1 : -1) * Number(t.amount), 0)
    const shares = mine.reduce((sum, t) => sum + (t.side === 'buy' ? 1 : -1) * Number(t.quantity), 0)
    assert.equal(Number(user.credit), CREDIT - spent, `credit of ${user.id}`)
    assert.equal(Number(holdings.find((h) => h.user_id === user.id)?.quantity ?? 0), shares, `shares of ${user.id}`)
    assert.deepEqual(JSON.parse((await redis.get(user.id)) ?? 'null'), { id: user.contract_id, credit: Number(user.credit) }, `projection of ${user.id}`)
  }

  assert.equal(await sim.stop(), 0, `verify-sim stops gracefully:\n${sim.output()}`)
  running.delete(sim)
})
