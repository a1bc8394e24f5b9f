/**
 * Crash safety of The Eye's worker, proven with SIGKILL: `bourse events-worker` is killed
 * again and again while 100,000 events flow, each time while it is visibly inserting.
 * Afterwards every accepted event is stored exactly once: in `events` if it is valid, in
 * `event_errors` if not, never in both, and an event sent twice is stored once. The events
 * travel as the intake writes them: version 2 messages of up to 50 events (one request
 * each), with a few old version 1 messages of one event among them.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import { sql } from 'kysely'
import { type AcceptedEvent, encodeEventBatchMessage, encodeEventMessage } from '../../src/events/event-message.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createProducer } from '../../src/platform/kafka/clients.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { createTestTopic, testConfig, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'

const EVENTS = 100_000
const KILLS = 6
const BATCH_SIZE = 2000
/** Events produced per request to Kafka. */
const CHUNK = 5000
/** Events per version 2 message, as in a request to the intake. */
const PER_MESSAGE = 50

let testDb: TestDb
const topic = uniqueName('events-crash')
const appId = randomUUID()
const running = new Set<ServiceProcess>()
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  testDb = await openTestDb()
  cleanups.push(await createTestTopic(topic, 3))
  await testDb.db.insertInto('apps').values({ id: appId, name: 'crash-test', token_hash: randomUUID() }).execute()
})
after(async () => {
  for (const service of running) await service.kill()
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch (err) {
      console.warn('cleanup failed', err)
    }
  }
  await testDb.close()
})

/** Event `i`: one in ten invalid (three kinds), one in fifty of a type without a schema (stored unvalidated). */
function eventMessage(i: number): { message: AcceptedEvent; valid: boolean } {
  const base = Date.UTC(2021, 0, 1, 9, 15, 27)
  const micros = String(i % 1_000_000).padStart(6, '0')
  const event: AcceptedEvent['event'] = {
    session_id: `session-${i % 500}`,
    category: 'page interaction',
    name: 'cta click',
    data: { host: 'www.consumeraffairs.com', path: `/page/${i}`, element: 'chat bubble' },
    timestamp: `${new Date(base + i * 1000).toISOString().slice(0, 19).replace('T', ' ')}.${micros}`,
  }
  let valid = true
  if (i % 10 === 3) {
    valid = false
    const kind = Math.floor(i / 10) % 3
    if (kind === 0) event.data = { host: 'www.consumeraffairs.com', path: '/' }
    else if (kind === 1) event.timestamp = new Date(Date.now() + 86_400_000).toISOString()
    else event.timestamp = '2021-02-30 10:00:00'
  } else if (i % 50 === 7) {
    event.category = 'video'
    event.name = 'play'
    event.data = { seconds: i }
  }
  return { message: { id: randomUUID(), app_id: appId, received_at: new Date().toISOString(), event }, valid }
}

async function storedCount(): Promise<number> {
  const { rows } = await sql<{ n: string }>`select (select count(*) from events) + (select count(*) from event_errors) as n`.execute(testDb.db)
  return Number(rows[0]!.n)
}

test('SIGKILLed events worker: each accepted event ends exactly once in events or event_errors', async (t) => {
  const generated = Array.from({ length: EVENTS }, (_, i) => eventMessage(i))
  const validIds = new Set(generated.filter((g) => g.valid).map((g) => g.message.id))
  const invalidIds = new Set(generated.filter((g) => !g.valid).map((g) => g.message.id))
  // One event in forty is sent twice, the second time a chunk or more later (a client's retry).
  const sends = generated.map((g) => g.message)
  for (let i = 0; i < EVENTS; i += 40) sends.push(generated[i]!.message)
  assert.equal(validIds.size + invalidIds.size, EVENTS)

  const producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
  cleanups.push(() => producer.close())
  const produce = async (from: number, to: number) => {
    for (let i = from; i < to; i += CHUNK) {
      const chunk = sends.slice(i, Math.min(to, i + CHUNK))
      const messages = []
      for (let j = 0; j < chunk.length; j += PER_MESSAGE) {
        const events = chunk.slice(j, j + PER_MESSAGE)
        // One message in a hundred the old way, one event each.
        if ((i + j) % (100 * PER_MESSAGE) === 0) {
          for (const m of events) messages.push({ topic, key: m.event.session_id, value: encodeEventMessage(m) })
          continue
        }
        const header = { app_id: appId, received_at: events[0]!.received_at, ids: events.map((m) => m.id) }
        messages.push({ topic, value: encodeEventBatchMessage(header, JSON.stringify(events.map((m) => m.event))) })
      }
      await producer.send({ messages })
    }
  }
  const producing = Date.now()
  // Half before the worker starts, the rest while it is being killed.
  const half = Math.floor(sends.length / 2)
  await produce(0, half)
  t.diagnostic(`produced ${half} events in ${Date.now() - producing} ms`)

  const env = testEnv({ ...testDb.env, EVENTS_TOPIC: topic, EVENTS_TOPIC_PARTITIONS: '3' })
  const args = ['events-worker', '--group', uniqueName('events-worker'), '--batch-size', String(BATCH_SIZE), '--instance-id', 'crash-events']
  const start = () => {
    const service = startService(args, env)
    running.add(service)
    return service
  }
  let worker = start()
  const rest = produce(half, sends.length)

  const storedAtKill: number[] = []
  for (let kill = 0; kill < KILLS; kill++) {
    const before = await storedCount()
    // Killed only once this instance has visibly inserted, at a random moment after that.
    await waitFor(async () => (await storedCount()) > before, { timeoutMs: 30_000, intervalMs: 20, what: `inserts before kill ${kill + 1}` })
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 150))
    storedAtKill.push(await storedCount())
    await worker.kill()
    running.delete(worker)
    worker = start()
  }
  const lastStart = Date.now()
  await rest
  t.diagnostic(`produced ${sends.length} events (${sends.length - EVENTS} resent) in ${Date.now() - producing} ms`)
  assert.ok(storedAtKill.every((n) => n < EVENTS), `work was left at every kill: ${storedAtKill.join(', ')}`)
  t.diagnostic(`rows stored at each of the ${KILLS} kills: ${storedAtKill.join(', ')}`)
  const storedAtLastStart = await storedCount()

  await waitFor(async () => (await storedCount()) >= EVENTS, { timeoutMs: 60_000, intervalMs: 200, what: 'every event stored' })
  const finished = Date.now()
  assert.equal(await worker.stop(), 0, worker.output())
  running.delete(worker)

  const { db } = testDb
  const events = new Set((await db.selectFrom('events').select('id').execute()).map((r) => r.id))
  const errors = new Set((await db.selectFrom('event_errors').select('id').execute()).map((r) => r.id))
  assert.equal(events.size + errors.size, EVENTS, 'count(events) + count(event_errors) = distinct ids sent')
  assert.equal([...events].filter((id) => errors.has(id)).length, 0, 'no id in both tables')
  assert.equal([...validIds].filter((id) => !events.has(id)).length, 0, 'every valid event in events')
  assert.equal([...invalidIds].filter((id) => !errors.has(id)).length, 0, 'every invalid event in event_errors')
  const reasons = await db.selectFrom('event_errors').select('reasons').limit(3).execute()
  assert.ok(reasons.every((r) => r.reasons.length > 0), 'errors carry their reasons')

  const { rows } = await sql<{ first: Date; last: Date }>`
    select min(stored_at) as first, max(stored_at) as last from (select stored_at from events union all select stored_at from event_errors) s`.execute(db)
  const span = (rows[0]!.last.getTime() - rows[0]!.first.getTime()) / 1000
  const lastRun = (finished - lastStart) / 1000
  t.diagnostic(
    `${EVENTS} events stored (${events.size} valid, ${errors.size} invalid) over ${span.toFixed(1)} s with ${KILLS} kills: ` +
      `${Math.round(EVENTS / span)} events/s overall; the last, uninterrupted run stored ${EVENTS - storedAtLastStart} ` +
      `in ${lastRun.toFixed(1)} s including its start (${Math.round((EVENTS - storedAtLastStart) / lastRun)} events/s)`,
  )
})
