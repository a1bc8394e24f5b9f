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
 *    requests/s and events/s. Target: intake at least 0.5 of the empty route's requests/s
 *    (and the seed's own target, 100 events/s). Also each server's CPU time per request
 *    (Linux /proc), which other load on the 2-core machine disturbs much less than req/s.
 *
 * B. Worker: once the intake is stopped, everything it accepted (the topic's end
 *    offsets) is stored by `bourse events-worker`, timed from its start to the last row
 *    (`events` + `event_errors`), and from its first row to its last. Baseline: the same
 *    Kafka client consuming the same topic as a new group, doing nothing per message,
 *    before and after the worker (the faster of the two is the baseline).
 *
 * Options (env): BENCH_CONNECTIONS (50), BENCH_ROUNDS (3), BENCH_SECONDS (5 per round),
 * BENCH_WARMUP_SECONDS (3), BENCH_BATCH (50 events per request), BENCH_PARTITIONS (3),
 * BENCH_REDIS_DB (9, flushed before and after), BENCH_WORKER_TIMEOUT_S (600), BENCH_CPU_PROF (a
 * directory: the API and worker processes write V8 CPU profiles there when they stop).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import autocannon from 'autocannon'
import { sql } from 'kysely'
import { createApp } from '../src/events/apps.repository.ts'
import type { IncomingEvent } from '../src/events/events.schemas.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { closeDb, createDb, migrateToLatest } from '../src/platform/db/index.ts'
import { createAdmin, createConsumer, partitionBounds } from '../src/platform/kafka.ts'
import { createLogger } from '../src/platform/logger.ts'
import { closeRedis, createRedis } from '../src/platform/redis.ts'

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3)
const BATCH = Number(process.env.BENCH_BATCH ?? 50)
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 3)
const REDIS_DB = Number(process.env.BENCH_REDIS_DB ?? 9)
const WORKER_TIMEOUT_S = Number(process.env.BENCH_WORKER_TIMEOUT_S ?? 600)
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF
const profileFlags = CPU_PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR] : []
const RATIO_TARGET = 0.5
const SEED_TARGET_EVENTS_PER_SECOND = 100

const repoRoot = fileURLToPath(new URL('../', import.meta.url))
const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = randomBytes(5).toString('hex')
const schema = `bench_${suffix}`
const topic = `bench-events-${suffix}`
const workerGroup = `bench-events-worker-${suffix}`
const rawGroups: string[] = []
const redisUrl = `${config.REDIS_URL.replace(/\/\d*$/, '')}/${REDIS_DB}`
const kafka = { brokers: kafkaBrokers(config) }

/** The environment of every service process: this run's namespaces, quiet logs. */
const serviceEnv: NodeJS.ProcessEnv = {
  ...process.env,
  DATABASE_SCHEMA: schema,
  REDIS_URL: redisUrl,
  EVENTS_TOPIC: topic,
  EVENTS_TOPIC_PARTITIONS: String(PARTITIONS),
  LOG_LEVEL: 'warn',
  // The limiter stays on (a Redis counter per request) but never refuses.
  RATE_LIMIT_MAX: '100000000',
  EVENTS_RATE_LIMIT_MAX: '100000000',
}
const serviceConfig = loadConfig(serviceEnv)

// ---------------------------------------------------------------------------------------
// Failure: any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).

const failure = Promise.withResolvers<never>()
failure.promise.catch(() => {})
let failed: Error | undefined
let stopLoad: (() => void) | undefined
function fail(err: Error): void {
  if (failed) return
  failed = err
  stopLoad?.()
  failure.reject(err)
}
/** `promise`, unless the run fails first. */
const guard = <T>(promise: Promise<T>): Promise<T> => Promise.race([promise, failure.promise])
process.once('SIGINT', () => fail(new Error('interrupted')))

// ---------------------------------------------------------------------------------------
// Child processes.

interface Child {
  name: string
  process: ChildProcess
  exited: Promise<unknown>
  stopping: boolean
  /** The last lines it printed, for a failure report. */
  tail: string[]
  stdout: string
}

const children: Child[] = []

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const child: Child = { name, process: proc, exited: once(proc, 'exit'), stopping: false, tail: [], stdout: '' }
  const keep = (text: string) => {
    child.tail.push(...text.split('\n').filter((line) => line !== ''))
    child.tail.splice(0, Math.max(0, child.tail.length - 40))
  }
  proc.stdout.setEncoding('utf8').on('data', (text: string) => {
    child.stdout += text
    keep(text)
  })
  proc.stderr.setEncoding('utf8').on('data', keep)
  proc.on('exit', (code, signal) => {
    if (!child.stopping) fail(new Error(`${name} exited (${code ?? signal}) during the run:\n${child.tail.join('\n')}`))
  })
  children.push(child)
  return child
}

/** Resolves with the first match of `pattern` in the child's stdout. */
async function waitForOutput(child: Child, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const match = pattern.exec(child.stdout)
    if (match) return match
    if (Date.now() > deadline) throw new Error(`${child.name} printed nothing matching ${pattern} in ${timeoutMs} ms`)
    await guard(sleep(20))
  }
}

/** SIGTERM, then SIGKILL after 15 s. */
async function stopChild(child: Child): Promise<void> {
  child.stopping = true
  if (child.process.exitCode !== null || child.process.signalCode !== null) return
  child.process.kill('SIGTERM')
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 15_000)
  await child.exited
  clearTimeout(timer)
}

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
// Statistics.

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const round1 = (n: number) => Math.round(n * 10) / 10

/** Clock ticks per second of /proc times. */
const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU time (user + system, ms) a process has used, from /proc; undefined where there is none. */
function cpuMs(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // After "pid (name) ", utime and stime are the 12th and 13th fields.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks
  } catch {
    return undefined
  }
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

interface LoadRound {
  requestsPerSecond: number
  eventsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** CPU time of the server process per answered request (µs); null without /proc. */
  serverCpuUsPerRequest: number | null
}

async function load(url: string, server: Child, headers: Record<string, string>, body: string, seconds: number): Promise<LoadRound> {
  const cpuBefore = cpuMs(server.process.pid)
  const result = await guard(
    new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(
        { url, method: 'POST', headers, body, connections: CONNECTIONS, pipelining: 1, duration: seconds },
        (err: unknown, res) => (err ? reject(err as Error) : resolve(res)),
      )
      stopLoad = () => instance.stop()
    }),
  )
  stopLoad = undefined
  const cpuAfter = cpuMs(server.process.pid)
  const bad = result.non2xx + result.errors + result.timeouts
  if (bad > 0 || result['2xx'] === 0) {
    throw new Error(
      `${url}: ${result['2xx']} answers 2xx, ${result.non2xx} not (4xx ${result['4xx']}, 5xx ${result['5xx']}), ` +
        `${result.errors} errors, ${result.timeouts} timeouts`,
    )
  }
  return {
    requestsPerSecond: result.requests.average,
    eventsPerSecond: result.requests.average * BATCH,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result['2xx'],
    serverCpuUsPerRequest:
      cpuBefore === undefined || cpuAfter === undefined ? null : Math.round(((cpuAfter - cpuBefore) * 1000) / result['2xx']),
  }
}

/** A round with whole rates, for the JSON. */
const rounded = (r: LoadRound): LoadRound => ({
  ...r,
  requestsPerSecond: Math.round(r.requestsPerSecond),
  eventsPerSecond: Math.round(r.eventsPerSecond),
})

function summarize(rounds: LoadRound[]) {
  return {
    requestsPerSecond: Math.round(median(rounds.map((r) => r.requestsPerSecond))),
    eventsPerSecond: Math.round(median(rounds.map((r) => r.eventsPerSecond))),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    serverCpuUsPerRequest: rounds.some((r) => r.serverCpuUsPerRequest === null)
      ? null
      : median(rounds.map((r) => r.serverCpuUsPerRequest!)),
  }
}

// ---------------------------------------------------------------------------------------
// B. Worker against raw consumption.

/** Messages in the topic: the sum of its partitions' end offsets (nothing is deleted). */
async function topicMessages(): Promise<number> {
  const group = `bench-events-offsets-${suffix}`
  const consumer = createConsumer(kafka, group)
  try {
    const bounds = await partitionBounds(consumer, topic)
    return bounds.reduce((sum, b) => sum + Number(b.end - b.start), 0)
  } finally {
    await consumer.close(true)
  }
}

/** Baseline: the same client consuming the topic as a new group, doing nothing per message. */
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

const db = createDb({ url: config.DATABASE_URL, schema, max: 2, log })
const redis = createRedis(redisUrl, log, 'bench')

try {
  await redis.flushdb()
  await migrateToLatest(db, schema)

  // The application's token, as an operator gets it.
  let token: string
  const created = await runCli(['apps', 'create', `bench-${suffix}`])
  const printed = created.stdout.trim()
  if (created.code === 0 && printed.startsWith('bourse_app_')) token = printed
  else {
    process.stdout.write(`\`bourse apps create\` failed (${created.code}): ${created.stderr.trim()}; creating the app with Kysely\n`)
    token = (await createApp(db, `bench-${suffix}`)).token
  }

  const api = startChild('bourse api', [...profileFlags, 'src/cli.ts', 'api', '--port', '0'], serviceEnv)
  const empty = startChild('empty server', ['bench/empty-server.ts'], process.env)
  const apiUrl = (await waitForOutput(api, /api listening on (http:\/\/\S+)/))[1]!
  const emptyUrl = (await waitForOutput(empty, /listening on (http:\/\/\S+)/))[1]!

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const body = batchBody()
  // One request first: the batch is accepted whole, and the limiter is on.
  const probe = await fetch(`${apiUrl}/api/events`, { method: 'POST', headers, body })
  const probeBody = await probe.text()
  if (probe.status !== 202 || (JSON.parse(probeBody) as { accepted?: number }).accepted !== BATCH) {
    throw new Error(`intake probe: ${probe.status} ${probeBody}`)
  }
  const limit = probe.headers.get('x-ratelimit-limit')
  if (limit !== serviceConfig.EVENTS_RATE_LIMIT_MAX.toString()) throw new Error(`rate limit not on (x-ratelimit-limit: ${limit})`)

  process.stdout.write(
    `A. intake (${BATCH} events per request, ${Buffer.byteLength(body)} bytes) vs empty Fastify: ${CONNECTIONS} connections, ` +
      `${ROUNDS} rounds of ${SECONDS} s after ${WARMUP_SECONDS} s warm-up each\n`,
  )
  // The empty server has one route, POST /api/buy-stock; it parses any JSON body.
  const emptyRoute = `${emptyUrl}/api/buy-stock`
  const intakeRoute = `${apiUrl}/api/events`
  await load(emptyRoute, empty, headers, body, WARMUP_SECONDS)
  // Every 202 (the probe's too): the topic must hold at least these events.
  let answered = 1 + (await load(intakeRoute, api, headers, body, WARMUP_SECONDS)).requests
  const baselineRounds: LoadRound[] = []
  const intakeRounds: LoadRound[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    baselineRounds.push(await load(emptyRoute, empty, headers, body, SECONDS))
    intakeRounds.push(await load(intakeRoute, api, headers, body, SECONDS))
    answered += intakeRounds.at(-1)!.requests
    const [b, a] = [baselineRounds.at(-1)!, intakeRounds.at(-1)!]
    process.stdout.write(
      `round ${round}: empty ${b.requestsPerSecond.toFixed(0)} req/s (p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms, ` +
        `${b.serverCpuUsPerRequest ?? '?'} µs CPU/req), intake ${a.requestsPerSecond.toFixed(0)} req/s = ` +
        `${a.eventsPerSecond.toFixed(0)} events/s (p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ` +
        `${a.serverCpuUsPerRequest ?? '?'} µs CPU/req), ratio ${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}\n`,
    )
  }
  await stopChild(empty)
  await stopChild(api)
  const baseline = summarize(baselineRounds)
  const intake = summarize(intakeRounds)
  const ratio = intake.requestsPerSecond / baseline.requestsPerSecond
  const cpuRatio =
    baseline.serverCpuUsPerRequest && intake.serverCpuUsPerRequest
      ? baseline.serverCpuUsPerRequest / intake.serverCpuUsPerRequest
      : null

  // B. Everything the intake accepted, stored by the worker.
  // One message per request (version 2: the request's events; the body is far under the
  // 768 KiB a message holds), so BATCH events per message.
  const messages = await topicMessages()
  const total = messages * BATCH
  // Requests still in flight when autocannon stopped may have been taken too, unanswered.
  if (total < answered * BATCH) throw new Error(`the topic holds ${total} events, but ${answered * BATCH} were acknowledged`)
  const expectedErrors = total / BATCH
  process.stdout.write(`\nB. ${total} accepted events in ${topic}: raw consume, then bourse events-worker, then raw consume\n`)
  // Messages/s, as events/s (BATCH events per message), to compare with the worker.
  const rawBefore = BATCH * (await guard(rawConsume(1, messages)))
  const workerStarted = performance.now()
  const worker = startChild('bourse events-worker', [...profileFlags, 'src/cli.ts', 'events-worker', '--group', workerGroup], serviceEnv)
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
  const rawRate = Math.max(rawBefore, rawAfter)
  const workerRate = total / ((workerDone - workerStarted) / 1000)
  const workerSteadyRate = firstRowAt === undefined ? workerRate : total / ((workerDone - firstRowAt) / 1000)

  const rows: Array<[string, string]> = [
    ['connections / rounds / seconds per round', `${CONNECTIONS} / ${ROUNDS} / ${SECONDS}`],
    ['events per request / body bytes', `${BATCH} / ${Buffer.byteLength(body)}`],
    ['empty Fastify, baseline, median (req/s)', String(baseline.requestsPerSecond)],
    ['empty Fastify p50 / p99, median (ms)', `${baseline.p50Ms} / ${baseline.p99Ms}`],
    ['intake, durable acks, median (req/s)', String(intake.requestsPerSecond)],
    ['intake, durable acks, median (events/s)', String(intake.eventsPerSecond)],
    ['intake p50 / p99, median (ms)', `${intake.p50Ms} / ${intake.p99Ms}`],
    [`intake / empty req/s (target >= ${RATIO_TARGET})`, ratio.toFixed(2)],
    [
      `intake events/s / seed target ${SEED_TARGET_EVENTS_PER_SECOND}`,
      (intake.eventsPerSecond / SEED_TARGET_EVENTS_PER_SECOND).toFixed(0),
    ],
    [
      'server CPU per request, empty / intake (µs)',
      `${baseline.serverCpuUsPerRequest ?? '?'} / ${intake.serverCpuUsPerRequest ?? '?'}`,
    ],
    ['empty / intake CPU per request (ratio on a core each)', cpuRatio?.toFixed(2) ?? '?'],
    ['events acknowledged (202) / in the topic', `${answered * BATCH} / ${total}`],
    ['events stored: events + errors', `${counts.events} + ${counts.errors}`],
    ['raw consume, baseline, before / after (msg/s x events per msg)', `${Math.round(rawBefore)} / ${Math.round(rawAfter)}`],
    ['worker, start to last row (events/s)', String(Math.round(workerRate))],
    ['worker, first row to last row (events/s)', String(Math.round(workerSteadyRate))],
    ['worker (first to last row) / raw consume', (workerSteadyRate / rawRate).toFixed(2)],
    ['worker start to last row (s)', ((workerDone - workerStarted) / 1000).toFixed(1)],
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`)
  const result = {
    benchmark: 'events',
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    connections: CONNECTIONS,
    rounds: ROUNDS,
    roundSeconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    eventsPerRequest: BATCH,
    bodyBytes: Buffer.byteLength(body),
    partitions: PARTITIONS,
    rateLimitMax: serviceConfig.EVENTS_RATE_LIMIT_MAX,
    intake: {
      baselineRounds: baselineRounds.map(rounded),
      intakeRounds: intakeRounds.map(rounded),
      roundRatios: intakeRounds.map((r, i) => Number((r.requestsPerSecond / baselineRounds[i]!.requestsPerSecond).toFixed(3))),
      baseline,
      intake,
      ratio: Number(ratio.toFixed(3)),
      ratioTarget: RATIO_TARGET,
      cpuRatio: cpuRatio === null ? null : Number(cpuRatio.toFixed(3)),
      seedTargetEventsPerSecond: SEED_TARGET_EVENTS_PER_SECOND,
    },
    worker: {
      acknowledged: answered * BATCH,
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
    },
  }
  await writeFile(new URL('./results/events.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write('\nwritten to bench/results/events.json\n')
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  // Each step on its own: one failing does not keep the others from cleaning up.
  const steps: Array<[string, () => Promise<unknown>]> = [
    ['processes', () => Promise.all(children.map(stopChild))],
    ['schema', () => sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db)],
    ['postgres', () => closeDb(db)],
    [
      'kafka',
      async () => {
        const admin = createAdmin(kafka)
        try {
          const mine = (await admin.listTopics()).filter((t) => t === topic || t.startsWith(`${topic}.`))
          if (mine.length > 0) await admin.deleteTopics({ topics: mine })
          const groups = await admin.listGroups()
          const ours = [workerGroup, `bench-events-offsets-${suffix}`, ...rawGroups].filter((g) => groups.has(g))
          if (ours.length > 0) await admin.deleteGroups({ groups: ours })
        } finally {
          await admin.close()
        }
      },
    ],
    ['redis', () => redis.flushdb()],
    ['redis connection', () => closeRedis(redis)],
  ]
  for (const [step, run] of steps) {
    try {
      await run()
    } catch (err) {
      process.stderr.write(`cleanup of ${step} failed: ${(err as Error).message}\n`)
    }
  }
}
