/**
 * The events worker against the real Kafka and PostgreSQL: valid events land in
 * `events`, invalid ones with their reasons in `event_errors`, each id once, poison in
 * the dead-letter topic; PostgreSQL going away is waited out without committing.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { sql } from 'kysely'
import { encodeEventBatchMessage, encodeEventMessage, type EventMessageV1 } from '../../src/events/event-message.ts'
import { createEventsWorker, type EventsWorkerOptions } from '../../src/events/events.consumer.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { closeDb, createDb } from '../../src/platform/db/index.ts'
import type { Database, Db } from '../../src/database.ts'
import { createAdmin, createConsumer, createProducer, type StringProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { assertDeadLetterHeaders, deadLetters, failingDeadLetterProducer } from '../helpers/dead-letters.ts'
import { createTestTopic, testConfig, uniqueName, waitFor } from '../helpers/infra.ts'
import { endOffsets, readTopic } from '../helpers/topic-reader.ts'

const config = testConfig()
const settings = { brokers: kafkaBrokers(config) }
const log = createLogger({ level: 'silent', pretty: false })
let testDb: TestDb
/** The worker's own pool, apart from the one the assertions use. */
let workerDb: Db
let producer: StringProducer
const appId = randomUUID()
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  testDb = await openTestDb()
  workerDb = createDb<Database>({ url: config.DATABASE_URL, schema: testDb.schema, max: 4 })
  producer = createProducer(settings)
  await testDb.db.insertInto('apps').values({ id: appId, name: 'consumer-test', token_hash: randomUUID() }).execute()
})
after(async () => {
  // Each step on its own: a topic that fails to delete must not leave connections open.
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch (err) {
      console.warn('cleanup failed', err)
    }
  }
  await producer.close()
  await closeDb(workerDb)
  await testDb.close()
})

async function eventsTopic(): Promise<string> {
  const topic = uniqueName('events')
  // The topic's cleanup deletes its dead-letter topic too.
  cleanups.push(await createTestTopic(topic, 3))
  const admin = createAdmin(settings)
  try {
    await admin.createTopics({ topics: [`${topic}.dead-letter`], partitions: 1, replicas: 1 })
  } finally {
    await admin.close()
  }
  return topic
}

function message(event: Record<string, unknown>, overrides: Partial<EventMessageV1> = {}): EventMessageV1 {
  return {
    v: 1,
    id: randomUUID(),
    app_id: appId,
    received_at: '2021-01-01T09:15:28.000Z',
    event: {
      session_id: 'session-1',
      category: 'page interaction',
      name: 'pageview',
      data: { host: 'www.consumeraffairs.com', path: '/' },
      timestamp: '2021-01-01 09:15:27.243860',
      ...event,
    } as EventMessageV1['event'],
    ...overrides,
  }
}

async function send(topic: string, messages: Array<EventMessageV1 | { key: string; value: string }>) {
  await producer.send({
    messages: messages.map((m) =>
      'v' in m ? { topic, key: m.event.session_id, value: encodeEventMessage(m) } : { topic, key: m.key, value: m.value },
    ),
  })
}

type WorkerOptions = Partial<EventsWorkerOptions> & { group?: string; db?: Db; producer?: StringProducer }

/** Starts a worker on its own consumer and producer; `stop()` aborts it and closes them. */
function startWorker(topic: string, options: WorkerOptions = {}) {
  const consumer = createConsumer(settings, options.group ?? uniqueName('events-worker'), { maxWaitTime: 100 })
  const workerProducer = options.producer ?? createProducer(settings)
  const worker = createEventsWorker(
    { consumer, producer: workerProducer, db: options.db ?? workerDb, log },
    {
      topic,
      deadLetterTopic: `${topic}.dead-letter`,
      batchSize: 50,
      unknownType: 'store',
      futureToleranceMs: 60_000,
      idleMs: 300,
      ...options,
    },
  )
  const controller = new AbortController()
  const running = worker.run(controller.signal)
  running.catch(() => {}) // surfaced by stop()
  return {
    worker,
    running,
    async stop() {
      controller.abort()
      try {
        return await running
      } finally {
        await consumer.close(true)
        await workerProducer.close()
      }
    },
  }
}

/** Runs a worker until the group has committed every partition to its end. */
async function runWorker(topic: string, options: WorkerOptions = {}) {
  const started = startWorker(topic, { untilIdle: true, ...options })
  await started.running
  return { stats: await started.stop() }
}

const count = async (table: 'events' | 'event_errors', ids: string[]) =>
  ids.length === 0
    ? 0
    : Number((await testDb.db.selectFrom(table).select(testDb.db.fn.countAll<string>().as('n')).where('id', 'in', ids).executeTakeFirstOrThrow()).n)

describe('one run over a mixed topic', () => {
  test('valid events, invalid ones with every reason, duplicates once, poison in the dead-letter topic', async () => {
    const topic = await eventsTopic()
    const valid = [
      message({}),
      message({ name: 'cta click', data: { host: 'h', path: '/', element: 'chat bubble' }, timestamp: '2021-01-01T11:15:27.000001+02:00' }),
      message({ category: 'form interaction', name: 'submit', data: { host: 'h', path: '/', form: { first_name: 'J', last_name: 'D' } } }),
    ]
    const unknownType = message({ category: 'video', name: 'play', data: { seconds: 3 } })
    const missing = message({ name: 'cta click', data: { host: 'h' }, session_id: 'session-2' })
    const future = message({ timestamp: new Date(Date.now() + 3_600_000).toISOString() })
    const impossible = message({ timestamp: '2021-02-30 10:00:00', data: { host: 7, path: '/' } })
    const stranger = message({}, { app_id: randomUUID() })
    const nul = message({ data: { host: 'h\u0000', path: '/' } })
    await send(topic, [...valid, unknownType, missing, future, impossible])
    // A client's retry: the same events again, in the same batch and in a later one.
    await send(topic, [valid[0]!, missing])
    await send(topic, [
      { key: 'p1', value: 'not json' },
      { key: 'p2', value: JSON.stringify({ v: 3 }) },
      { key: 'p3', value: JSON.stringify({ ...message({}), app_id: 'not-a-uuid' }) },
      stranger,
      nul,
    ])
    await send(topic, [valid[1]!])

    const { stats } = await runWorker(topic)

    const { db } = testDb
    const events = await db
      .selectFrom('events')
      .select(['id', 'app_id', 'session_id', 'category', 'name', 'data', 'validated'])
      .select(sql<string>`to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('occurred'))
      .execute()
    const byId = new Map(events.map((e) => [e.id, e]))
    assert.equal(events.length, 4)
    assert.deepEqual(byId.get(valid[0]!.id), {
      id: valid[0]!.id,
      app_id: appId,
      session_id: 'session-1',
      category: 'page interaction',
      name: 'pageview',
      data: { host: 'www.consumeraffairs.com', path: '/' },
      validated: true,
      occurred: '2021-01-01T09:15:27.243860Z',
    })
    assert.equal(byId.get(valid[1]!.id)?.occurred, '2021-01-01T09:15:27.000001Z', 'converted to UTC, microsecond kept')
    assert.equal(byId.get(valid[2]!.id)?.validated, true)
    assert.equal(byId.get(unknownType.id)?.validated, false, 'a type without a schema is stored unvalidated')

    const errors = await db.selectFrom('event_errors').selectAll().execute()
    const errorById = new Map(errors.map((e) => [e.id, e]))
    assert.equal(errors.length, 3)
    const missingRow = errorById.get(missing.id)!
    assert.deepEqual(missingRow.reasons, [
      { field: '/data/path', message: 'is required' },
      { field: '/data/element', message: 'is required' },
    ])
    assert.deepEqual(missingRow.raw, missing.event)
    assert.equal(missingRow.app_id, appId)
    assert.deepEqual([missingRow.session_id, missingRow.category, missingRow.name], ['session-2', 'page interaction', 'cta click'])
    assert.deepEqual(errorById.get(future.id)?.reasons.map((r) => r.field), ['/timestamp'])
    assert.match(errorById.get(future.id)!.reasons[0]!.message, /^is in the future/)
    assert.deepEqual(
      errorById.get(impossible.id)?.reasons,
      [
        { field: '/data/host', message: 'must be string' },
        { field: '/timestamp', message: 'is not a valid date: 2021-02 has no day 30' },
      ],
    )

    const dead = (await readTopic(`${topic}.dead-letter`)).flat()
    const reasons = new Map(dead.map((r) => [r.key, r.headers.get('bourse-error') ?? '']))
    assert.equal(dead.length, 5, [...reasons.values()].join('\n'))
    assert.match(reasons.get('p1')!, /not JSON/)
    assert.match(reasons.get('p2')!, /no version 1/)
    assert.match(reasons.get('p3')!, /app_id that is not a UUID/)
    const refused = dead.filter((r) => r.key === 'session-1').map((r) => JSON.parse(r.value!) as EventMessageV1)
    assert.deepEqual(refused.map((m) => m.id).sort(), [stranger.id, nul.id].sort(), 'an unknown app and a NUL character: refused by PostgreSQL')
    for (const record of dead) assert.equal(record.headers.get('bourse-source-topic'), topic)

    assert.equal(stats.stored, 4)
    assert.equal(stats.rejected, 3)
    assert.equal(stats.duplicates, 3)
    assert.equal(stats.deadLettered, 5)
    assert.equal(stats.received, 15)
  })
})

describe('version 2 messages', () => {
  test('each event of a request stored with its id, app and time; a refused one dead-lettered alone, a malformed message whole', async () => {
    const topic = await eventsTopic()
    const valid = message({})
    const invalid = message({ name: 'cta click', data: { host: 'h' } })
    const nul = message({ data: { host: 'h\u0000', path: '/' } })
    const header = { app_id: appId, received_at: '2021-01-01T09:15:28.000Z' }
    const batch = [valid, invalid, nul]
    const v2 = (ids: string[], events: unknown[]) => encodeEventBatchMessage({ ...header, ids }, JSON.stringify(events))
    await producer.send({
      messages: [
        { topic, value: v2(batch.map((m) => m.id), batch.map((m) => m.event)) },
        // Fewer ids than events, and an id that is not one: the whole message is poison.
        { topic, key: 'short', value: v2([randomUUID()], [valid.event, valid.event]) },
        { topic, key: 'bad-id', value: v2(['nope'], [valid.event]) },
      ],
    })
    // A version 1 message in the same topic, and a resent event (the first counts).
    const old = message({ session_id: 'old' })
    await send(topic, [old, valid])

    const { stats } = await runWorker(topic)

    const { db } = testDb
    const mine = [valid.id, invalid.id, nul.id, old.id]
    const events = await db.selectFrom('events').select(['id', 'app_id', 'session_id', 'received_at']).where('id', 'in', mine).execute()
    assert.deepEqual(events.map((e) => e.id).sort(), [valid.id, old.id].sort())
    const stored = events.find((e) => e.id === valid.id)!
    assert.equal(stored.app_id, appId)
    assert.equal(stored.received_at.toISOString(), header.received_at)
    const errors = await db.selectFrom('event_errors').select(['id', 'reasons']).where('id', 'in', mine).execute()
    assert.deepEqual(errors.map((e) => e.id), [invalid.id])

    const dead = (await readTopic(`${topic}.dead-letter`)).flat()
    assert.equal(dead.length, 3)
    const refused = dead.filter((r) => r.key === 'session-1')
    assert.equal(refused.length, 1)
    assert.deepEqual(JSON.parse(refused[0]!.value!), nul, 'the refused event alone, as a version 1 message')
    assert.match(refused[0]!.headers.get('bourse-error')!, /refused by PostgreSQL/)
    assert.match(dead.find((r) => r.key === 'short')!.headers.get('bourse-error')!, /as many ids/)
    assert.match(dead.find((r) => r.key === 'bad-id')!.headers.get('bourse-error')!, /no id for event 0/)

    assert.equal(stats.received, 5)
    assert.equal(stats.events, 5)
    assert.equal(stats.stored, 2)
    assert.equal(stats.rejected, 1)
    assert.equal(stats.duplicates, 1)
    assert.equal(stats.deadLettered, 3)
  })
})

describe('replays', () => {
  test('a replay stores nothing twice, and an id already in the other table stays there', async () => {
    const topic = await eventsTopic()
    const { db } = testDb
    const judgedInvalidBefore = message({})
    const judgedValidBefore = message({ data: { host: 'h' } })
    // As if the registry changed between a crash and the replay: the earlier verdict stands.
    await db
      .insertInto('event_errors')
      .values({
        id: judgedInvalidBefore.id,
        app_id: appId,
        raw: JSON.stringify(judgedInvalidBefore.event),
        reasons: JSON.stringify([{ field: '/data/host', message: 'an older schema said so' }]),
        received_at: judgedInvalidBefore.received_at,
      })
      .execute()
    await db
      .insertInto('events')
      .values({
        id: judgedValidBefore.id,
        app_id: appId,
        session_id: 's',
        category: 'page interaction',
        name: 'pageview',
        data: JSON.stringify(judgedValidBefore.event.data),
        occurred_at: '2021-01-01T00:00:00Z',
        received_at: judgedValidBefore.received_at,
      })
      .execute()
    const fresh = Array.from({ length: 120 }, (_, i) => message({ session_id: `s${i % 7}`, ...(i % 4 === 0 && { data: {} }) }))
    await send(topic, [judgedInvalidBefore, judgedValidBefore, ...fresh])

    const first = await runWorker(topic)
    assert.equal(first.stats.duplicates, 2)
    const ids = fresh.map((m) => m.id)
    assert.equal(await count('events', ids), 90)
    assert.equal(await count('event_errors', ids), 30)
    assert.equal(await count('events', [judgedInvalidBefore.id]), 0)
    assert.equal(await count('event_errors', [judgedValidBefore.id]), 0)

    // A new group reads the whole topic again: the state of a worker that crashed before any commit.
    const replay = await runWorker(topic)
    assert.equal(replay.stats.received, 122)
    assert.equal(replay.stats.stored + replay.stats.rejected, 0)
    assert.equal(replay.stats.duplicates, 122)
    assert.equal(await count('events', ids), 90)
    assert.equal(await count('event_errors', ids), 30)
  })
})

/** A TCP proxy in front of PostgreSQL that the test switches off (connections cut and refused) and on. */
async function startPostgresProxy(target: URL) {
  let up = false
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    if (!up) {
      client.destroy()
      return
    }
    const upstream = connect(Number(target.port || 5432), target.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  server.listen({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  const url = new URL(target)
  url.hostname = '127.0.0.1'
  url.port = String((server.address() as AddressInfo).port)
  return {
    url: url.toString(),
    setUp(value: boolean) {
      up = value
      if (!value) for (const socket of sockets) socket.destroy()
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

describe('ids in another case', () => {
  test('the same id with upper-case hex digits, judged otherwise in the same batch, is a duplicate: the first one counts, stored once', async () => {
    const topic = await eventsTopic()
    // An event of the batch already stored (a replay) sends the batch to bourse_store_events,
    // whose two inserts share a snapshot: there, two spellings of one id would reach both tables.
    const replayed = message({})
    await testDb.db
      .insertInto('events')
      .values({
        id: replayed.id,
        app_id: appId,
        session_id: 'session-1',
        category: 'page interaction',
        name: 'pageview',
        data: JSON.stringify(replayed.event.data),
        occurred_at: '2021-01-01T09:15:27.243Z',
        received_at: replayed.received_at,
      })
      .execute()
    const first = message({})
    const again = message({ data: { host: 7 } }, { id: first.id.toUpperCase() })
    await send(topic, [replayed, first, again])
    const { stats } = await runWorker(topic)
    assert.equal(await count('events', [first.id]), 1)
    assert.equal(await count('event_errors', [first.id]), 0, 'not also an error')
    assert.deepEqual([stats.stored, stats.rejected, stats.duplicates], [1, 0, 2])
  })
})

describe('PostgreSQL unavailable', () => {
  const committedOffsets = async (topic: string, group: string) => {
    const reader = createConsumer(settings, group)
    try {
      return (await reader.listCommittedOffsets({ topics: [{ topic, partitions: [0, 1, 2] }] })).get(topic) ?? []
    } finally {
      await reader.close()
    }
  }
  const unreachableDb = async () => {
    const proxy = await startPostgresProxy(new URL(config.DATABASE_URL))
    cleanups.push(() => proxy.close())
    const db = createDb<Database>({ url: proxy.url, schema: testDb.schema, max: 2 })
    cleanups.push(() => closeDb(db))
    return { proxy, db }
  }

  test('the batch is retried with backoff until PostgreSQL is back, and its offsets are committed only then', async () => {
    const topic = await eventsTopic()
    const { proxy, db } = await unreachableDb()
    const group = uniqueName('events-worker')
    const messages = Array.from({ length: 10 }, (_, i) => message({ session_id: `s${i}` }))
    await send(topic, messages)

    const started = startWorker(topic, { group, db, batchSize: 100, retryBaseMs: 20, retryMaxMs: 200 })
    await waitFor(() => started.worker.stats.retries >= 5, { what: 'retries while PostgreSQL is down' })
    assert.deepEqual(await committedOffsets(topic, group), [-1n, -1n, -1n], 'nothing committed while the batch is not stored')
    assert.equal(await count('events', messages.map((m) => m.id)), 0)

    proxy.setUp(true)
    const ends = await endOffsets(topic)
    await waitFor(async () => (await committedOffsets(topic, group)).every((offset, partition) => offset === ends[partition]), {
      what: 'offsets committed once stored',
    })
    assert.equal(await count('events', messages.map((m) => m.id)), 10)
    const stats = await started.stop()
    assert.equal(stats.stored, 10)
    assert.ok(stats.retries >= 5)
  })

  test('stopped while PostgreSQL is down: run resolves and the batch stays uncommitted', async () => {
    const topic = await eventsTopic()
    const { db } = await unreachableDb()
    const group = uniqueName('events-worker')
    await send(topic, [message({})])
    const started = startWorker(topic, { group, db, retryBaseMs: 20, retryMaxMs: 100 })
    await waitFor(() => started.worker.stats.retries >= 1, { what: 'a failed attempt' })
    const stats = await started.stop()
    assert.equal(stats.batches, 0)
    assert.equal(stats.received, 1)
    assert.deepEqual(await committedOffsets(topic, group), [-1n, -1n, -1n])
  })
})

describe('dead-letter topic unavailable', () => {
  test('a failed dead-letter send is retried, not fatal: the poison lands once with its headers, later events are stored', async () => {
    const topic = await eventsTopic()
    const deadLetterTopic = `${topic}.dead-letter`
    const before = message({})
    await producer.send({ messages: [{ topic, key: 'poison', value: 'not json', partition: 0 }] })
    await producer.send({ messages: [{ topic, key: before.event.session_id, value: encodeEventMessage(before), partition: 0 }] })
    const failing = failingDeadLetterProducer(createProducer(settings), deadLetterTopic, 2)
    const started = startWorker(topic, { producer: failing.producer, retryBaseMs: 10, retryMaxMs: 50 })
    await waitFor(async () => (await count('events', [before.id])) === 1, { what: 'the event after the poison stored' })
    const later = message({})
    await send(topic, [later])
    await waitFor(async () => (await count('events', [later.id])) === 1, { what: 'a later event stored' })
    const stats = await started.stop()
    assert.equal(failing.failed(), 2, 'two sends failed before one went through')
    assert.equal(stats.deadLettered, 1)
    assert.ok(stats.retries >= 2)
    const dead = await deadLetters(deadLetterTopic)
    assert.equal(dead.length, 1, 'dead-lettered exactly once')
    assertDeadLetterHeaders(dead[0]!, { topic, partition: 0, offset: 0n }, /not JSON/)
    assert.deepEqual([dead[0]!.key, dead[0]!.value], ['poison', 'not json'])
  })
})
