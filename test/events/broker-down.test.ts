/**
 * The intake when Kafka fails, on a broker of the test's own: hung (SIGSTOP), then
 * SIGKILLed while requests are in flight. Meanwhile the intake answers 503 with
 * `Retry-After`, each within a bounded time; every event that got a 202 (before or during the kill) is in the topic
 * once the broker is back on the same data, and the events worker stores it in
 * PostgreSQL.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import { decodeEventMessage } from '../../src/events/event-message.ts'
import { createConsumer } from '../../src/platform/kafka/clients.ts'
import { type EventsApi, openEventsApi, sampleEvent } from '../helpers/events.ts'
import { testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { type OwnKafka, startOwnKafka } from '../helpers/own-kafka.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'
import { readTopic } from '../helpers/topic-reader.ts'

/** The intake's wait for the broker (its default) and what a 503 may take beyond it. */
const SEND_TIMEOUT_MS = 5000
const SLACK_MS = 3000

let kafka: OwnKafka | undefined
let api: EventsApi | undefined
const running = new Set<ServiceProcess>()

before(async () => {
  kafka = await startOwnKafka()
  api = await openEventsApi({ env: { KAFKA_BROKERS: kafka.broker } })
})
after(async () => {
  for (const service of running) await service.kill()
  try {
    await api?.close()
  } finally {
    await kafka?.destroy()
  }
})

/** A batch of valid events, half of them with their own id. */
const batch = (size: number) => Array.from({ length: size }, (_, i) => sampleEvent(randomUUID(), i % 2 === 0 ? { id: randomUUID() } : {}))

interface Outcome {
  status: number
  ms: number
  startedAt: number
  retryAfter: string | undefined
  code: string | undefined
}

test('Kafka hung, then SIGKILLed: 503 with Retry-After in bounded time; every event that got a 202 is stored after it is back', async (t) => {
  assert.ok(api && kafka)
  const { app, auth, tokens, topic, testDb } = api
  const accepted = new Set<string>()
  const outcomes: Outcome[] = []

  const post = async (size: number): Promise<Outcome> => {
    const startedAt = performance.now()
    const res = await app.inject({
      method: 'POST',
      url: '/api/events',
      headers: { ...auth(tokens.app), 'content-type': 'application/json' },
      payload: JSON.stringify(batch(size)),
    })
    const outcome: Outcome = {
      status: res.statusCode,
      ms: performance.now() - startedAt,
      startedAt,
      retryAfter: res.headers['retry-after'] as string | undefined,
      code: res.statusCode === 202 ? undefined : (res.json() as { error: { code: string } }).error.code,
    }
    if (res.statusCode === 202) for (const id of (res.json() as { ids: string[] }).ids) accepted.add(id)
    outcomes.push(outcome)
    return outcome
  }

  // Up: everything is taken.
  for (let i = 0; i < 20; i++) assert.equal((await post(10)).status, 202)

  // Hung (SIGSTOP): the broker never answers, so the intake gives up after its bound.
  kafka.pause()
  let hung: Outcome
  try {
    hung = await post(3)
  } finally {
    kafka.resume()
  }
  assert.equal(hung.status, 503)
  assert.equal(hung.retryAfter, '5')
  assert.ok(hung.ms >= SEND_TIMEOUT_MS - 100 && hung.ms < SEND_TIMEOUT_MS + SLACK_MS, `a hung broker answered after ${Math.round(hung.ms)} ms`)
  t.diagnostic(`hung broker: 503 after ${Math.round(hung.ms)} ms`)
  await waitFor(async () => (await post(1)).status === 202, { timeoutMs: 30_000, intervalMs: 200, what: 'a 202 after SIGCONT' })

  // Killed under load: four senders keep posting while the broker dies.
  let stop = false
  const sender = async () => {
    while (!stop) await post(5)
  }
  const senders = [sender(), sender(), sender(), sender()]
  await waitFor(() => outcomes.length >= 60, { what: 'requests under load' })
  await kafka.kill()
  const killedAt = performance.now()
  try {
    await waitFor(() => outcomes.filter((o) => o.startedAt > killedAt && o.status === 503).length >= 8, {
      timeoutMs: 60_000,
      what: '503s after the kill',
    })
  } finally {
    stop = true
    await Promise.all(senders)
  }

  // Down: a fresh request is refused, with Retry-After, within the intake's bound.
  const down = await post(3)
  assert.equal(down.status, 503)
  assert.equal(down.code, 'service_unavailable')
  assert.equal(down.retryAfter, '5')

  const statuses = new Set(outcomes.map((o) => o.status))
  assert.deepEqual([...statuses].filter((s) => s !== 202 && s !== 503), [], 'only 202 or 503')
  const refused = outcomes.filter((o) => o.status === 503 && o.startedAt > killedAt)
  assert.ok(refused.every((o) => o.retryAfter === '5' && o.code === 'service_unavailable'))
  const slowest = Math.max(...refused.map((o) => o.ms))
  t.diagnostic(
    `${outcomes.length} requests: ${outcomes.filter((o) => o.status === 202).length} accepted (${accepted.size} events), ` +
      `${refused.length} refused, the slowest 503 after ${Math.round(slowest)} ms, the fastest after ${Math.round(Math.min(...refused.map((o) => o.ms)))} ms`,
  )
  assert.ok(slowest < SEND_TIMEOUT_MS + SLACK_MS, `a 503 took ${Math.round(slowest)} ms`)

  // Back on the same data: the intake takes events again (the producer reconnects).
  await kafka.restart()
  await waitFor(async () => (await post(1)).status === 202, { timeoutMs: 60_000, intervalMs: 500, what: 'a 202 after the restart' })

  // Every event that got a 202 is in the topic.
  const reader = createConsumer({ brokers: [kafka.broker] }, uniqueName('topic-reader'))
  let inTopic: Set<string>
  try {
    inTopic = new Set((await readTopic(topic, reader)).flat().flatMap((record) => decodeEventMessage(record.value!).map((e) => e.id)))
  } finally {
    await reader.close()
  }
  const missing = [...accepted].filter((id) => !inTopic.has(id))
  assert.deepEqual(missing, [], `${missing.length} of ${accepted.size} accepted events are not in the topic`)

  // And the events worker stores every one of them in PostgreSQL.
  const worker = startService(
    ['events-worker', '--group', uniqueName('events-worker')],
    testEnv({ ...testDb.env, KAFKA_BROKERS: kafka.broker, EVENTS_TOPIC: topic }),
  )
  running.add(worker)
  const ids = [...accepted]
  const stored = async () => {
    const rows = await testDb.db.selectFrom('events').select('id').where('id', 'in', ids).execute()
    return rows.length
  }
  try {
    await waitFor(async () => (await stored()) === ids.length, { timeoutMs: 60_000, intervalMs: 200, what: 'the accepted events in PostgreSQL' })
  } catch (err) {
    const errors = await testDb.db.selectFrom('event_errors').select(['id', 'reasons']).limit(3).execute()
    throw new Error(`${(err as Error).message}: ${await stored()} of ${ids.length} stored; event errors ${JSON.stringify(errors)}\n${worker.output().slice(-2000)}`)
  }
  assert.equal(await worker.stop(), 0)
  running.delete(worker)
})
