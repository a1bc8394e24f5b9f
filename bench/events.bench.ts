/**
 * `npm run bench:events`: The Eye's intake and worker, run as the production processes
 * (`bourse api`, `bourse events-worker`) on the real Redis, Kafka and PostgreSQL, each in
 * a namespace of its own (a `bench_<random>` schema, Redis database BENCH_REDIS_DB, a
 * `bench-events-<random>` topic), all removed at the end, also on failure.
 *
 * A. Intake: `POST /api/events` with batches of BENCH_BATCH events per request (one of
 *    each batch invalid, so the worker also writes errors), with authentication, the
 *    Redis rate limit on (a limit too high to trigger) and durable acks (the 202 comes
 *    after the broker confirmed every event). Against an empty Fastify route in another
 *    process of the same Node (`bench/empty-server.ts`: it parses the same JSON body and
 *    answers a constant) measured in the same run: autocannon, the same body, alternating
 *    rounds after a warm-up, compared by medians. Every answer must be 2xx. Reported as
 *    requests/s and events/s. Target: intake at least 0.6 of the empty route's requests/s
 *    (and the seed's own target, 100 events/s). Also each server's CPU time per request
 *    (Linux /proc), which other load on the 2-core machine disturbs much less than req/s.
 *
 * B. Worker: once the intake is stopped and the topic was checked to hold every event
 *    answered 202, its oldest messages are deleted down to the last BENCH_WORKER_EVENTS
 *    events, which `bourse events-worker` stores, timed from its start to the last row
 *    (`events` + `event_errors`), and from its first row to its last. Baseline: the same
 *    Kafka client consuming the same topic as a new group, doing nothing per message,
 *    before and after the worker (the faster of the two is the baseline). Then PostgreSQL
 *    alone: the first BENCH_COPY_ROWS stored events taken into a copy of `events` (the
 *    same indexes, checks and foreign key) with COPY FROM STDIN, and for reference with
 *    INSERT ... SELECT. Target: the worker at least 0.5 of COPY's rows/s.
 *
 * The intake's warm-up is longer than the empty route's: it also warms the Kafka broker.
 * A broker started a moment ago (a JVM) compiles its produce path during its first ~20 s
 * of this load, taking 40-77% of a core on a 2-core machine where it shares the CPU with
 * the API (17-20% once warm): measured from its start, the intake's rounds gave 0.46
 * against 0.54-0.65 a minute later.
 *
 * Options (env): BENCH_CONNECTIONS (50), BENCH_ROUNDS (5), BENCH_SECONDS (5 per round),
 * BENCH_WARMUP_SECONDS (3; the empty route's), BENCH_INTAKE_WARMUP_SECONDS (20),
 * BENCH_BATCH (50 events per request), BENCH_PARTITIONS (3),
 * BENCH_REDIS_DB (9, flushed before and after), BENCH_WORKER_EVENTS (2,000,000), BENCH_COPY_ROWS (500,000), BENCH_WORKER_TIMEOUT_S (600), BENCH_CPU_PROF (a
 * directory: the API and worker processes write V8 CPU profiles there when they stop),
 * BENCH_SKIP_WORKER (1 stops after A, printing its ratio and writing no result file),
 * BENCH_PIN and BENCH_MAX_SPREAD (see pinCores and alternateRounds in ./lib.ts).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import { sql } from 'kysely'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { createApp } from '../src/events/apps.repository.ts'
import type { IncomingEvent } from '../src/events/events.schemas.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { createDb } from '../src/platform/db/index.ts'
import type { Database } from '../src/database.ts'
import { createAdmin, createConsumer, partitionBounds } from '../src/platform/kafka/clients.ts'
import { createLogger } from '../src/platform/logger.ts'
import { createRedis } from '../src/platform/redis.ts'
import {
  alternateRounds,
  API_LISTENING,
  assertRateLimitOn,
  baselineRows,
  type Child,
  compareSummaries,
  cpuProfileFlags,
  cpuRows,
  createFailure,
  createProcesses,
  intEnv,
  EMPTY_LISTENING,
  type LoadRound,
  loadAverage1m,
  loadRound,
  median,
  namespaceCleanup,
  NEVER_REFUSED_LIMIT,
  prepareNamespace,
  pinCores,
  printTable,
  redisDbUrl,
  repoRoot,
  round1,
  roundDetails,
  roundRatios,
  runCleanup,
  runConditions,
  runSuffix,
  type Row,
  serviceEnvFor,
  settingsRow,
  startApi,
  startEmptyServer,
  stopChild,
  summarize,
  validityRow,
  writeResult,
} from './lib.ts'

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3)
const INTAKE_WARMUP_SECONDS = Number(process.env.BENCH_INTAKE_WARMUP_SECONDS ?? 20)
const BATCH = Number(process.env.BENCH_BATCH ?? 50)
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 3)
const REDIS_DB = Number(process.env.BENCH_REDIS_DB ?? 9)
const WORKER_TIMEOUT_S = Number(process.env.BENCH_WORKER_TIMEOUT_S ?? 600)
const WORKER_EVENTS = Number(process.env.BENCH_WORKER_EVENTS ?? 2_000_000)
const COPY_ROWS = intEnv('BENCH_COPY_ROWS', 500_000, 1)
const profileFlags = cpuProfileFlags(process.env.BENCH_CPU_PROF)
const SKIP_WORKER = process.env.BENCH_SKIP_WORKER === '1'
const RATIO_TARGET = 0.6
/** The worker's rate over PostgreSQL's own rate of taking the same rows into a copy of the table, at least. */
const STORE_TARGET = 0.5
const SEED_TARGET_EVENTS_PER_SECOND = 100

const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = runSuffix()
const schema = `bench_${suffix}`
const topic = `bench-events-${suffix}`
const workerGroup = `bench-events-worker-${suffix}`
const rawGroups: string[] = []
const redisUrl = redisDbUrl(config.REDIS_URL, REDIS_DB)
const kafka = { brokers: kafkaBrokers(config) }

/** The environment of every service process: this run's namespaces, quiet logs. */
const serviceEnv = serviceEnvFor(
  process.env,
  { schema, redisUrl },
  { EVENTS_TOPIC: topic, EVENTS_TOPIC_PARTITIONS: String(PARTITIONS), EVENTS_RATE_LIMIT_MAX: NEVER_REFUSED_LIMIT },
)
const serviceConfig = loadConfig(serviceEnv)

// Any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).
const failure = createFailure()
const { guard } = failure
const pinning = pinCores()
const processes = createProcesses(failure, pinning)

/** Runs `bourse <args>` to the end. */
async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['src/cli.ts', ...args], { cwd: repoRoot, env: serviceEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const [code] = (await once(proc, 'exit')) as [number | null]
  return { code, stdout, stderr }
}

// ---------------------------------------------------------------------------------------
// A. Intake against an empty route.

/** One request's body: BATCH events over BATCH sessions (so over every partition), one invalid. */
function batchBody(): string {
  const events: IncomingEvent[] = []
  for (let i = 0; i < BATCH; i++) {
    const page = { host: 'www.consumeraffairs.com', path: `/reviews/${i}` }
    const kind = i % 3
    events.push({
      session_id: `bench-session-${i}`,
      category: kind === 2 ? 'form interaction' : 'page interaction',
      name: kind === 0 ? 'pageview' : kind === 1 ? 'cta click' : 'submit',
      // The last event of the batch lacks `host`: the worker stores it as an error.
      data:
        i === BATCH - 1
          ? { path: '/' }
          : kind === 0
            ? page
            : kind === 1
              ? { ...page, element: 'chat bubble' }
              : { ...page, form: { first_name: 'Ada', last_name: 'Lovelace' } },
      timestamp: '2021-01-01 09:15:27.243860',
    })
  }
  return JSON.stringify(events)
}

/** A round of the intake or of the empty route, with the events it carried (BATCH per request). */
interface IntakeRound extends LoadRound {
  eventsPerSecond: number
}

/** One round of `body` POSTed to `url`, served by `server`. */
async function load(url: string, server: Child, headers: Record<string, string>, body: string, seconds: number): Promise<IntakeRound> {
  const { requestsPerSecond, ...rest } = await loadRound({ url, server, headers, body, connections: CONNECTIONS, seconds }, failure)
  // eventsPerSecond right after requestsPerSecond, where the JSON has always had it.
  return { requestsPerSecond, eventsPerSecond: requestsPerSecond * BATCH, ...rest }
}

/** A round with whole rates, for the JSON. */
const rounded = (r: IntakeRound): IntakeRound => ({
  ...r,
  requestsPerSecond: Math.round(r.requestsPerSecond),
  eventsPerSecond: Math.round(r.eventsPerSecond),
})

/** The rounds' medians, events/s among them. */
function summarizeIntake(rounds: IntakeRound[]) {
  const { requestsPerSecond, ...rest } = summarize(rounds)
  return { requestsPerSecond, eventsPerSecond: Math.round(median(rounds.map((r) => r.eventsPerSecond))), ...rest }
}

// ---------------------------------------------------------------------------------------
// B. Worker against raw consumption.

/** The topic's partitions, from their first kept offset to their end. */
async function topicBounds(): Promise<Array<{ partition: number; start: bigint; end: bigint }>> {
  const group = `bench-events-offsets-${suffix}`
  const consumer = createConsumer(kafka, group)
  try {
    return await partitionBounds(consumer, topic)
  } finally {
    await consumer.close(true)
  }
}

/** Messages in the topic: the sum of its partitions' kept offsets. */
const messagesIn = (bounds: Array<{ start: bigint; end: bigint }>) => bounds.reduce((sum, b) => sum + Number(b.end - b.start), 0)

/**
 * Deletes the oldest messages of each partition so that about `keep` remain, shared as
 * the partitions' sizes are (the worker's run then takes minutes, however long part A
 * ran). Returns the messages left.
 */
async function trimTopic(keep: number): Promise<number> {
  const bounds = await topicBounds()
  const total = messagesIn(bounds)
  if (total <= keep) return total
  const admin = createAdmin(kafka)
  try {
    const partitions = bounds.map(({ partition, start, end }) => {
      const share = BigInt(Math.ceil((Number(end - start) * keep) / total))
      return { partition, offset: end - share > start ? end - share : start }
    })
    await admin.deleteRecords({ topics: [{ name: topic, partitions }] })
  } finally {
    await admin.close()
  }
  return messagesIn(await topicBounds())
}

/** Baseline: the same client consuming the topic as a new group, doing nothing per message. */
/** PostgreSQL's own rates of taking rows into the events table, see {@link postgresAlone}. */
interface PostgresAlone {
  /** Rows copied (the first stored events, at most BENCH_COPY_ROWS). */
  rows: number
  /** COPY ... FROM STDIN of those rows, sent by this process as PostgreSQL's text format: the baseline. */
  copyRowsPerSecond: number
  /** INSERT ... SELECT of the same rows inside PostgreSQL (nothing to parse): for reference. */
  insertSelectRowsPerSecond: number
}

/**
 * PostgreSQL's own rate of taking the stored events into a table like `events`: the same
 * columns, indexes, defaults and checks (`like events including all`) and its foreign key.
 * The first BENCH_COPY_ROWS stored events are exported to a file first (not timed), then
 * timed as they go back in with COPY FROM STDIN; the table is emptied and the same rows
 * are taken again by one INSERT ... SELECT. The copy and the file are removed after.
 */
async function postgresAlone(): Promise<PostgresAlone> {
  const file = join(tmpdir(), `bourse-bench-events-${suffix}.copy`)
  const client = new pg.Client({ connectionString: config.DATABASE_URL, options: `-c search_path=${schema}` })
  await client.connect()
  try {
    await client.query('create table events_copy (like events including all)')
    await client.query('alter table events_copy add foreign key (app_id) references apps (id)')
    const rows = `select * from events order by stored_at, id limit ${COPY_ROWS}`
    await pipeline(client.query(copyTo(`copy (${rows}) to stdout`)), createWriteStream(file))
    let started = performance.now()
    const copy = client.query(copyFrom('copy events_copy from stdin'))
    await pipeline(createReadStream(file), copy)
    const copySeconds = (performance.now() - started) / 1000
    const copied = copy.rowCount
    await client.query('truncate events_copy')
    started = performance.now()
    const inserted = await client.query(`insert into events_copy ${rows}`)
    const insertSeconds = (performance.now() - started) / 1000
    if (inserted.rowCount !== copied) throw new Error(`COPY took ${copied} rows, INSERT ... SELECT ${inserted.rowCount}`)
    return { rows: copied, copyRowsPerSecond: copied / copySeconds, insertSelectRowsPerSecond: copied / insertSeconds }
  } finally {
    await client.query('drop table if exists events_copy').catch(() => {})
    await client.end()
    await rm(file, { force: true })
  }
}

async function rawConsume(round: number, total: number): Promise<number> {
  const group = `bench-events-raw-${suffix}-${round}`
  rawGroups.push(group)
  const consumer = createConsumer(kafka, group)
  try {
    const stream = await consumer.consume({
      topics: [topic],
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: MessagesStreamFallbackModes.EARLIEST,
    })
    let count = 0
    let started = 0
    for await (const _message of stream) {
      if (count === 0) started = performance.now()
      count++
      if (count >= total) break
    }
    const seconds = (performance.now() - started) / 1000
    await stream.close()
    return (total - 1) / seconds
  } finally {
    await consumer.close(true)
  }
}

// ---------------------------------------------------------------------------------------
// The run.

const loadAtStart = loadAverage1m()
const db = createDb<Database>({ url: config.DATABASE_URL, schema, max: 2, log })
const redis = createRedis(redisUrl, log, 'bench')

try {
  await prepareNamespace(db, redis, schema)

  // The application's token, as an operator gets it.
  let token: string
  const created = await runCli(['apps', 'create', `bench-${suffix}`])
  const printed = created.stdout.trim()
  if (created.code === 0 && printed.startsWith('bourse_app_')) token = printed
  else {
    process.stdout.write(`\`bourse apps create\` failed (${created.code}): ${created.stderr.trim()}; creating the app with Kysely\n`)
    token = (await createApp(db, `bench-${suffix}`)).token
  }

  const api = startApi(processes, serviceEnv, profileFlags)
  const empty = startEmptyServer(processes, profileFlags)
  const apiUrl = await processes.waitForUrl(api, API_LISTENING)
  const emptyUrl = await processes.waitForUrl(empty, EMPTY_LISTENING)

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const body = batchBody()
  // One request first: the batch is accepted whole, and the limiter is on.
  const probe = await fetch(`${apiUrl}/api/events`, { method: 'POST', headers, body })
  const probeBody = await probe.text()
  if (probe.status !== 202 || (JSON.parse(probeBody) as { accepted?: number }).accepted !== BATCH) {
    throw new Error(`intake probe: ${probe.status} ${probeBody}`)
  }
  assertRateLimitOn(probe, serviceConfig.EVENTS_RATE_LIMIT_MAX)

  process.stdout.write(
    `A. intake (${BATCH} events per request, ${Buffer.byteLength(body)} bytes) vs empty Fastify: ${CONNECTIONS} connections, ` +
      `${ROUNDS} rounds of ${SECONDS} s after a warm-up of ${WARMUP_SECONDS} s (empty) and ${INTAKE_WARMUP_SECONDS} s (intake)\n`,
  )
  // The empty server has one route, POST /api/buy-stock; it parses any JSON body.
  const emptyRoute = `${emptyUrl}/api/buy-stock`
  const intakeRoute = `${apiUrl}/api/events`
  const { warmup, baselineRounds, subjectRounds: intakeRounds, discarded, validity } = await alternateRounds(
    (seconds) => load(emptyRoute, empty, headers, body, seconds),
    (seconds) => load(intakeRoute, api, headers, body, seconds),
    { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, subjectWarmupSeconds: INTAKE_WARMUP_SECONDS },
    (round, b, a) =>
      process.stdout.write(
        `round ${round}: empty ${b.requestsPerSecond.toFixed(0)} req/s ${roundDetails(b)}, intake ` +
          `${a.requestsPerSecond.toFixed(0)} req/s = ${a.eventsPerSecond.toFixed(0)} events/s ${roundDetails(a)}, ` +
          `ratio ${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}\n`,
      ),
  )
  // Every 202 (the probe's too): the topic must hold at least these events.
  const answered = 1 + warmup.subject.requests + [...intakeRounds, ...discarded.map((d) => d.subject)].reduce((sum, r) => sum + r.requests, 0)
  await stopChild(empty)
  await stopChild(api)
  const baseline = summarizeIntake(baselineRounds)
  const intake = summarizeIntake(intakeRounds)
  const { ratio, cpuRatio } = compareSummaries(baseline, intake)
  if (SKIP_WORKER) {
    process.stdout.write(`intake / empty req/s ${ratio.toFixed(2)} (target >= ${RATIO_TARGET}), CPU ratio ${cpuRatio?.toFixed(2)}\n`)
  } else {
    // B. Everything the intake accepted, stored by the worker.
    // One message per request (version 2: the request's events; the body is far under the
    // 768 KiB a message holds), so BATCH events per message.
    const inTopic = messagesIn(await topicBounds()) * BATCH
    // Requests still in flight when autocannon stopped may have been taken too, unanswered.
    if (inTopic < answered * BATCH) throw new Error(`the topic holds ${inTopic} events, but ${answered * BATCH} were acknowledged`)
    const messages = await trimTopic(Math.ceil(WORKER_EVENTS / BATCH))
    const total = messages * BATCH
    const expectedErrors = total / BATCH
    process.stdout.write(
      `\nB. the last ${total} of the ${inTopic} accepted events in ${topic}: raw consume, then bourse events-worker, then raw consume\n`,
    )
    // Messages/s, as events/s (BATCH events per message), to compare with the worker.
    const rawBefore = BATCH * (await guard(rawConsume(1, messages)))
    const workerStarted = performance.now()
    const worker = processes.start('bourse events-worker', ['src/cli.ts', 'events-worker', '--group', workerGroup], serviceEnv, profileFlags)
    let firstRowAt: number | undefined
    let stored = 0
    for (let deadline = Date.now() + WORKER_TIMEOUT_S * 1000; ; await guard(sleep(250))) {
      const { rows } = await sql<{ events: string; errors: string }>`
        select (select count(*) from events) as events, (select count(*) from event_errors) as errors`.execute(db)
      stored = Number(rows[0]!.events) + Number(rows[0]!.errors)
      if (stored > 0 && firstRowAt === undefined) firstRowAt = performance.now()
      if (stored >= total) break
      if (Date.now() > deadline) throw new Error(`the worker stored ${stored} of ${total} events in ${WORKER_TIMEOUT_S} s`)
    }
    const workerDone = performance.now()
    await stopChild(worker)
    const counts = (
      await sql<{ events: string; errors: string; unvalidated: string }>`
        select (select count(*) from events) as events, (select count(*) from event_errors) as errors,
          (select count(*) from events where not validated) as unvalidated`.execute(db)
    ).rows[0]!
    if (Number(counts.errors) !== expectedErrors || Number(counts.events) !== total - expectedErrors) {
      throw new Error(`stored ${counts.events} events and ${counts.errors} errors; expected ${total - expectedErrors} and ${expectedErrors}`)
    }
    const rawAfter = BATCH * (await guard(rawConsume(2, messages)))
    const alone = await postgresAlone()
    const postgresRate = alone.copyRowsPerSecond
    const rawRate = Math.max(rawBefore, rawAfter)
    const workerRate = total / ((workerDone - workerStarted) / 1000)
    const workerSteadyRate = firstRowAt === undefined ? workerRate : total / ((workerDone - firstRowAt) / 1000)

    const rows: Row[] = [
      settingsRow(CONNECTIONS, ROUNDS, SECONDS),
      ['events per request / body bytes', `${BATCH} / ${Buffer.byteLength(body)}`],
      ...baselineRows(baseline),
      ['intake, durable acks, median (req/s)', String(intake.requestsPerSecond)],
      ['intake, durable acks, median (events/s)', String(intake.eventsPerSecond)],
      ['intake p50 / p99, median (ms)', `${intake.p50Ms} / ${intake.p99Ms}`],
      [`intake / empty req/s (target >= ${RATIO_TARGET})`, ratio.toFixed(2)],
      [
        `intake events/s / seed target ${SEED_TARGET_EVENTS_PER_SECOND}`,
        (intake.eventsPerSecond / SEED_TARGET_EVENTS_PER_SECOND).toFixed(0),
      ],
      ...cpuRows('intake', baseline, intake, cpuRatio),
      validityRow(validity),
      ['events acknowledged (202) / in the topic / kept for the worker', `${answered * BATCH} / ${inTopic} / ${total}`],
      ['events stored: events + errors', `${counts.events} + ${counts.errors}`],
      ['raw consume, baseline, before / after (msg/s x events per msg)', `${Math.round(rawBefore)} / ${Math.round(rawAfter)}`],
      ['worker, start to last row (events/s)', String(Math.round(workerRate))],
      ['worker, first row to last row (events/s)', String(Math.round(workerSteadyRate))],
      ['worker (first to last row) / raw consume', (workerSteadyRate / rawRate).toFixed(2)],
      [`PostgreSQL alone, ${alone.rows} stored events into a copy of the table: COPY / INSERT ... SELECT (rows/s)`, `${Math.round(alone.copyRowsPerSecond)} / ${Math.round(alone.insertSelectRowsPerSecond)}`],
      [`worker (first to last row) / PostgreSQL's COPY (target >= ${STORE_TARGET})`, (workerSteadyRate / postgresRate).toFixed(2)],
      ['worker (first to last row) / INSERT ... SELECT', (workerSteadyRate / alone.insertSelectRowsPerSecond).toFixed(2)],
      ['worker start to last row (s)', ((workerDone - workerStarted) / 1000).toFixed(1)],
    ]
    printTable(rows)
    const result = {
      benchmark: 'events',
      date: new Date().toISOString(),
      node: process.version,
      ...runConditions(pinning, loadAtStart),
      connections: CONNECTIONS,
      rounds: ROUNDS,
      roundSeconds: SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      intakeWarmupSeconds: INTAKE_WARMUP_SECONDS,
      eventsPerRequest: BATCH,
      bodyBytes: Buffer.byteLength(body),
      partitions: PARTITIONS,
      rateLimitMax: serviceConfig.EVENTS_RATE_LIMIT_MAX,
      intake: {
        baselineRounds: baselineRounds.map(rounded),
        intakeRounds: intakeRounds.map(rounded),
        roundRatios: roundRatios(intakeRounds, baselineRounds),
        baseline,
        intake,
        ratio: Number(ratio.toFixed(3)),
        ratioTarget: RATIO_TARGET,
        cpuRatio: cpuRatio === null ? null : Number(cpuRatio.toFixed(3)),
        validity,
        seedTargetEventsPerSecond: SEED_TARGET_EVENTS_PER_SECOND,
      },
      worker: {
        acknowledged: answered * BATCH,
        inTopic,
        // The events the worker stored: the last ones of the topic, the older ones deleted.
        accepted: total,
        storedEvents: Number(counts.events),
        storedErrors: Number(counts.errors),
        unvalidated: Number(counts.unvalidated),
        batchSize: serviceConfig.EVENTS_BATCH_SIZE,
        startToLastRowSeconds: round1((workerDone - workerStarted) / 1000),
        eventsPerSecond: Math.round(workerRate),
        steadyEventsPerSecond: Math.round(workerSteadyRate),
        rawConsumeBefore: Math.round(rawBefore),
        rawConsumeAfter: Math.round(rawAfter),
        ratioToRawConsume: Number((workerSteadyRate / rawRate).toFixed(3)),
        postgresAlone: {
          into: 'a copy of events: like events including all (the same indexes, defaults and checks) and its foreign key',
          rows: alone.rows,
          copyRowsPerSecond: Math.round(alone.copyRowsPerSecond),
          insertSelectRowsPerSecond: Math.round(alone.insertSelectRowsPerSecond),
        },
        ratioToCopy: Number((workerSteadyRate / alone.copyRowsPerSecond).toFixed(3)),
        ratioToCopyTarget: STORE_TARGET,
        ratioToInsertSelect: Number((workerSteadyRate / alone.insertSelectRowsPerSecond).toFixed(3)),
      },
    }
    await writeResult('events', result)
  }
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  await runCleanup([
    ['processes', () => processes.stopAll()],
    ...namespaceCleanup({
      db,
      schema,
      kafka,
      topic,
      groups: [workerGroup, `bench-events-offsets-${suffix}`, ...rawGroups],
      redis,
    }),
  ])
}
