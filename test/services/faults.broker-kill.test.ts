/**
 * Fault: the Kafka broker SIGKILLed under load. Orders (POST /api/orders, verified by the
 * real verifier against the fake verification server) and events (POST /api/events,
 * stored by the real events worker) keep coming while a broker of the test's own dies and
 * comes back on the same data. Every order and every event that got a 202 is stored in
 * PostgreSQL exactly once afterwards: none lost, none twice. Requests during the outage
 * are refused with 503 (the API is not restarted).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { after, before, test } from 'node:test'
import { createApp } from '../../src/events/apps.repository.ts'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { sampleEvent } from '../helpers/events.ts'
import { createTestTopic, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { type OwnKafka, startOwnKafka } from '../helpers/own-kafka.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const USERS = 10

/** A service's log, one short line per entry, for a failure's message. */
const messages = (output: string) =>
  output
    .split('\n')
    .map((line) => {
      try {
        const entry = JSON.parse(line) as { time: number; msg: string; err?: { message?: string } }
        return `${new Date(entry.time).toISOString()} ${entry.msg}${entry.err ? `: ${String(entry.err.message).slice(0, 200)}` : ''}`
      } catch {
        return line.slice(0, 300)
      }
    })
    .join('\n')
    .slice(-4000)
/** verify-sim answers in 10 ms to 1 s; 600 ms is the scaled 60 s stall limit. */
const SCALE = 0.01
const TIMEOUT_MS = Math.round(60_000 * SCALE)

let kafka: OwnKafka | undefined
let api: TradingApi | undefined
const eventsTopic = uniqueName('events-kill')
const running = new Set<ServiceProcess>()
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  kafka = await startOwnKafka()
  api = await openTradingApi({ KAFKA_BROKERS: kafka.broker, EVENTS_TOPIC: eventsTopic, EVENTS_RATE_LIMIT_MAX: '1000000' })
  cleanups.push(await createTestTopic(eventsTopic, 3, [kafka.broker]))
  const users = await createAccounts(api.testDb.db, Array.from({ length: USERS }, (_, i) => ({ id: `trader${i}`, credit: 1_000_000_000 })))
  for (const user of users) await projectUser(api.redis, user)
})
after(async () => {
  for (const service of running) await service.kill()
  for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.warn('cleanup failed', err))
  try {
    await api?.close()
  } finally {
    await kafka?.destroy()
  }
})

test('broker SIGKILLed under load: every order and event that got a 202 is stored exactly once after the restart', async (t) => {
  assert.ok(kafka && api)
  const { db } = api.testDb
  const { token: appToken } = await createApp(db, uniqueName('kill-app'))

  const sim = startService(['verify-sim', '--port', '0', '--time-scale', String(SCALE), '--seed', '11'], testEnv())
  running.add(sim)
  const [, verifyUrl] = await sim.waitForOutput(/listening on (http:\/\/\S+)/)
  const env = testEnv({
    ...api.testDb.env,
    KAFKA_BROKERS: kafka.broker,
    ORDERS_TOPIC: api.topic,
    EVENTS_TOPIC: eventsTopic,
    VERIFY_URL: verifyUrl!,
    VERIFY_TIMEOUT_MS: String(TIMEOUT_MS),
  })
  const group = uniqueName('kill')
  const verifier = startService(['verifier', '--group', `${group}-verifier`, '--instance-id', `${group}-verifier-1`], env)
  const worker = startService(['events-worker', '--group', `${group}-events`, '--instance-id', `${group}-events-1`], env)
  running.add(verifier)
  running.add(worker)

  const orders: string[] = []
  const events: string[] = []
  const statuses = { order: new Map<number, number>(), events: new Map<number, number>() }
  let sinceKill = { accepted: 0, refused: 0 }
  const count = (map: Map<number, number>, status: number) => {
    map.set(status, (map.get(status) ?? 0) + 1)
    if (status === 202) sinceKill.accepted++
    else sinceKill.refused++
  }
  let stop = false
  // A refused client waits a little before it tries again (as Retry-After asks, shortened).
  const orderSender = async (n: number) => {
    for (let i = 0; !stop; i++) {
      const res = await api!.app.inject({
        method: 'POST',
        url: '/api/orders',
        headers: api!.auth(api!.tokens.admin),
        payload: { user: `trader${(n + i) % USERS}`, stockname: 'stock1', quantity: 1, side: 'buy' },
      })
      count(statuses.order, res.statusCode)
      if (res.statusCode === 202) orders.push((res.json() as { order_id: string }).order_id)
      else await delay(100)
    }
  }
  const eventSender = async () => {
    while (!stop) {
      const res = await api!.app.inject({
        method: 'POST',
        url: '/api/events',
        headers: { ...api!.auth(appToken), 'content-type': 'application/json' },
        payload: JSON.stringify(Array.from({ length: 5 }, () => sampleEvent(randomUUID()))),
      })
      count(statuses.events, res.statusCode)
      if (res.statusCode === 202) events.push(...(res.json() as { ids: string[] }).ids)
      else await delay(100)
    }
  }
  const senders = [orderSender(0), orderSender(1), orderSender(2), orderSender(3), eventSender(), eventSender()]
  try {
    // The kill comes with the whole path at work: orders verified and events stored.
    const working = async () =>
      orders.length >= 100 &&
      events.length >= 100 &&
      (await db.selectFrom('orders').select('id').where('status', 'in', ['filled', 'rejected']).limit(1).executeTakeFirst()) !== undefined &&
      (await db.selectFrom('events').select('id').limit(1).executeTakeFirst()) !== undefined
    await waitFor(working, { timeoutMs: 60_000, intervalMs: 200, what: 'orders verified and events stored before the kill' })
    sinceKill = { accepted: 0, refused: 0 }
    const phases = [performance.now()]
    await kafka.kill()
    await waitFor(() => sinceKill.refused >= 20, { timeoutMs: 30_000, what: 'requests refused after the kill' })
    phases.push(performance.now())
    await kafka.restart()
    phases.push(performance.now())
    sinceKill = { accepted: 0, refused: 0 }
    await waitFor(() => sinceKill.accepted >= 50, { timeoutMs: 60_000, what: 'requests accepted again after the restart' })
    phases.push(performance.now())
    const [killed, refused, restarted, accepted] = phases.map((p) => Math.round(p - phases[0]!))
    t.diagnostic(`killed at ${killed} ms, 20 refusals by ${refused} ms, restarted by ${restarted} ms, 50 accepted again by ${accepted} ms`)
  } finally {
    stop = true
    await Promise.all(senders)
  }
  const summary = (map: Map<number, number>) => JSON.stringify(Object.fromEntries(map))
  t.diagnostic(`orders by status ${summary(statuses.order)}, event requests by status ${summary(statuses.events)}`)
  assert.deepEqual([...new Set([...statuses.order.keys(), ...statuses.events.keys()])].sort(), [202, 503], 'only 202 and 503')

  // Every accepted order is verified and stored once: one row, final, one transaction if filled.
  const open = async () =>
    Number(
      (await db.selectFrom('orders').select(db.fn.countAll<string>().as('n')).where('id', 'in', orders).where('status', 'in', ['received', 'verifying']).executeTakeFirstOrThrow()).n,
    )
  const storedOrders = async () => (await db.selectFrom('orders').select('id').where('id', 'in', orders).execute()).length
  try {
    await waitFor(async () => (await storedOrders()) === orders.length && (await open()) === 0, { timeoutMs: 120_000, what: 'every accepted order stored and final' })
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${await storedOrders()} of ${orders.length} stored, ${await open()} open; verifier exit ${verifier.child.exitCode}\n${messages(verifier.output())}`)
  }
  const rows = await db.selectFrom('orders').select(['id', 'status']).where('id', 'in', orders).execute()
  assert.equal(rows.length, new Set(orders).size)
  const transactions = await db.selectFrom('transactions').select('order_id').where('order_id', 'in', orders).execute()
  const perOrder = new Map<string, number>()
  for (const tx of transactions) perOrder.set(tx.order_id, (perOrder.get(tx.order_id) ?? 0) + 1)
  for (const row of rows) {
    assert.ok(row.status === 'filled' || row.status === 'rejected', row.status)
    assert.equal(perOrder.get(row.id) ?? 0, row.status === 'filled' ? 1 : 0, `transactions of order ${row.id}`)
  }

  // Every accepted event is stored once, and none was taken for an error.
  const storedEvents = async () => Number((await db.selectFrom('events').select(db.fn.countAll<string>().as('n')).where('id', 'in', events).executeTakeFirstOrThrow()).n)
  try {
    await waitFor(async () => (await storedEvents()) === events.length, { timeoutMs: 120_000, what: 'every accepted event stored' })
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${await storedEvents()} of ${events.length} stored; worker exit ${worker.child.exitCode}\n${messages(worker.output())}`)
  }
  assert.equal(new Set(events).size, events.length, 'each accepted event has its own id')
  const errors = await db.selectFrom('event_errors').select('id').where('id', 'in', events).execute()
  assert.deepEqual(errors, [])
  t.diagnostic(`${orders.length} accepted orders (${rows.filter((r) => r.status === 'filled').length} filled) and ${events.length} accepted events, all stored once`)
})
