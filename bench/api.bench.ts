/**
 * `npm run bench:api`: the HTTP API and the order pipeline, run as the production
 * processes (`bourse api`, `bourse verifier`, `bourse callback-sender`) on the real Redis,
 * Kafka and PostgreSQL, each in a namespace of its own (a `bench_<random>` schema, a Redis
 * database, a `bench-orders-<random>` topic), all removed at the end, also on failure.
 *
 * A. BuyStock throughput and latency, with authentication and the Redis rate limit on
 *    (a limit too high to trigger), against an empty Fastify route in another process of
 *    the same Node (`bench/empty-server.ts`) measured in the same run: autocannon, the
 *    same body and headers, alternating rounds after a warm-up, compared by medians.
 *    Every answer must be 2xx. Target: BuyStock at least 0.6 of the empty route's req/s.
 *    Also the server process's CPU time per request (Linux /proc), which other load on
 *    the machine disturbs much less than req/s: it says what a request costs.
 *
 * B. The delay from the end of an order's verification to its callback's arrival, with
 *    BENCH_ORDERS orders in flight: orders are placed through the API with a callback URL
 *    served by this process; the verification API, also served here, holds every request
 *    until all orders are waiting on it, then answers each after a random 0 to
 *    BENCH_VERIFY_MAX_MS ms, noting when it wrote each answer. Both times come from this
 *    process's clock. Target: p99 at most 50 ms. Every callback must arrive. Before them,
 *    BENCH_WARMUP_ORDERS orders go through the same pipeline, verified at once and not
 *    measured: the services just started, and their first orders pay one-time costs (code
 *    not yet optimized, HTTP connections and parser, each PostgreSQL connection's first
 *    plans) that are not the delay this part measures. 0 measures from cold.
 *
 * Options (env): BENCH_CONNECTIONS (50), BENCH_ROUNDS (3), BENCH_SECONDS (5 per round),
 * BENCH_WARMUP_SECONDS (5), BENCH_ORDERS (1000; 0 skips B), BENCH_VERIFY_MAX_MS (2000),
 * BENCH_WARMUP_ORDERS (200), BENCH_REDIS_DB (10, flushed before and after), BENCH_CPU_PROF
 * (a directory: the API process writes a V8 CPU profile there when it stops),
 * BENCH_SKIP_THROUGHPUT (1 skips A).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { sql } from 'kysely'
import { createApiToken } from '../src/auth/index.ts'
import { createStockHistoryRepository } from '../src/market/index.ts'
import { createPrng } from '../src/market/tick-generator.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { closeDb, createDb, migrateToLatest, notifyChannel } from '../src/platform/db/index.ts'
import { createAdmin } from '../src/platform/kafka.ts'
import { createLogger } from '../src/platform/logger.ts'
import { closeRedis, createRedis } from '../src/platform/redis.ts'
import { createAccounts, projectUser } from '../src/trading/index.ts'

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5)
const ORDERS = Number(process.env.BENCH_ORDERS ?? 1000)
const VERIFY_MAX_MS = Number(process.env.BENCH_VERIFY_MAX_MS ?? 2000)
const WARMUP_ORDERS = Number(process.env.BENCH_WARMUP_ORDERS ?? 200)
const REDIS_DB = Number(process.env.BENCH_REDIS_DB ?? 10)
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF
const SKIP_THROUGHPUT = process.env.BENCH_SKIP_THROUGHPUT === '1'
const RATIO_TARGET = 0.6
const CALLBACK_P99_TARGET_MS = 50
/** Orders the bench places at once (the API's order route, not what is measured). */
const PLACING_CONCURRENCY = 32
const STOCK_PRICE = 10

const repoRoot = fileURLToPath(new URL('../', import.meta.url))
const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = randomBytes(5).toString('hex')
const schema = `bench_${suffix}`
const topic = `bench-orders-${suffix}`
const group = `bench-verifier-${suffix}`
const redisUrl = `${config.REDIS_URL.replace(/\/\d*$/, '')}/${REDIS_DB}`
const kafka = { brokers: kafkaBrokers(config) }

/** The environment of every service process: this run's namespaces, quiet logs. */
const serviceEnv: NodeJS.ProcessEnv = {
  ...process.env,
  DATABASE_SCHEMA: schema,
  REDIS_URL: redisUrl,
  ORDERS_TOPIC: topic,
  LOG_LEVEL: 'warn',
  // The limiter stays on (a Redis counter per request) but never refuses.
  RATE_LIMIT_MAX: '100000000',
  CALLBACK_ALLOWED_NETWORKS: '127.0.0.1',
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

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, nodeFlags: string[] = []): Child {
  const proc = spawn(process.execPath, [...nodeFlags, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
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

async function listen(server: Server): Promise<string> {
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeAllConnections()
  await closed
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => resolve(body))
    req.on('error', reject)
  })
}

// ---------------------------------------------------------------------------------------
// Statistics.

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
/** Nearest-rank percentile of ascending `sorted`. */
const percentile = (sorted: number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!
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
// A. BuyStock against an empty route.

interface LoadRound {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** CPU time of the server process per answered request (µs); null without /proc. */
  serverCpuUsPerRequest: number | null
}

async function load(
  url: string,
  server: Child,
  headers: Record<string, string>,
  body: string,
  seconds: number,
): Promise<LoadRound> {
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
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result['2xx'],
    serverCpuUsPerRequest:
      cpuBefore === undefined || cpuAfter === undefined ? null : Math.round(((cpuAfter - cpuBefore) * 1000) / result['2xx']),
  }
}

function summarize(rounds: LoadRound[]) {
  return {
    requestsPerSecond: Math.round(median(rounds.map((r) => r.requestsPerSecond))),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    serverCpuUsPerRequest: rounds.some((r) => r.serverCpuUsPerRequest === null)
      ? null
      : median(rounds.map((r) => r.serverCpuUsPerRequest!)),
  }
}

// ---------------------------------------------------------------------------------------
// B. Callback delay after verification.

/**
 * The verification API: holds every request until `expected` distinct orders wait on it,
 * then answers each `{"result":0}` after a random delay, noting when it wrote the answer.
 * While warming up, it answers every request at once instead.
 */
function createVerificationServer(expected: number) {
  const random = createPrng(Number.parseInt(suffix.slice(0, 8), 16))
  const held = new Map<string, ServerResponse[]>()
  const answeredAt = new Map<string, number>()
  const allWaiting = Promise.withResolvers<number>()
  let released = false
  let warmingUp = false
  let duplicates = 0
  const answer = (id: string, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"result":0}')
    answeredAt.set(id, performance.now())
  }
  const server = createServer((req, res) => {
    readBody(req).then(
      (body) => {
        const id = (JSON.parse(body) as { order_id?: unknown }).order_id
        if (typeof id !== 'string') {
          res.writeHead(400).end()
          return
        }
        if (warmingUp) {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"result":0}')
          return
        }
        const waiting = held.get(id)
        if (waiting || answeredAt.has(id)) duplicates++
        if (released) {
          answer(id, res)
          return
        }
        if (waiting) waiting.push(res)
        else held.set(id, [res])
        if (held.size < expected) return
        released = true
        allWaiting.resolve(performance.now())
        for (const [orderId, responses] of held) {
          setTimeout(() => {
            for (const r of responses) answer(orderId, r)
          }, random() * VERIFY_MAX_MS)
        }
      },
      () => res.writeHead(400).end(),
    )
  })
  return {
    server,
    answeredAt,
    /** Resolves (at that time) when every order waits on a verification. */
    allWaiting: allWaiting.promise,
    waiting: () => held.size,
    duplicates: () => duplicates,
    warmUp: (on: boolean) => {
      warmingUp = on
    },
  }
}

/**
 * The caller's callback endpoint: notes each order's first callback arrival, answers 204.
 * The first `warmup` orders to call back are the warm-up's: counted apart, then ignored.
 */
function createCallbackReceiver(expected: number, warmup: number) {
  const arrivedAt = new Map<string, number>()
  const types = new Map<string, number>()
  const all = Promise.withResolvers<void>()
  const warmedUp = Promise.withResolvers<void>()
  const warmupIds = new Set<string>()
  if (warmup === 0) warmedUp.resolve()
  let duplicates = 0
  let unsigned = 0
  const server = createServer((req, res) => {
    readBody(req).then(
      (body) => {
        const at = performance.now()
        res.writeHead(204).end()
        const payload = JSON.parse(body) as { type?: string; data?: { order_id?: string } }
        const id = payload.data?.order_id
        if (typeof req.headers['webhook-signature'] !== 'string') unsigned++
        if (id === undefined) return
        if (warmupIds.size < warmup || warmupIds.has(id)) {
          warmupIds.add(id)
          if (warmupIds.size === warmup) warmedUp.resolve()
          return
        }
        if (arrivedAt.has(id)) {
          duplicates++
          return
        }
        arrivedAt.set(id, at)
        types.set(payload.type ?? '?', (types.get(payload.type ?? '?') ?? 0) + 1)
        if (arrivedAt.size === expected) all.resolve()
      },
      () => res.writeHead(400).end(),
    )
  })
  return {
    server,
    arrivedAt,
    types,
    all: all.promise,
    /** Resolves when every warm-up order called back. */
    warmedUp: warmedUp.promise,
    warmupArrived: () => warmupIds.size,
    duplicates: () => duplicates,
    unsigned: () => unsigned,
  }
}

/** Places `count` buy orders of one share through the API; resolves to their ids. */
async function placeOrders(apiUrl: string, token: string, callbackUrl: string, count: number): Promise<string[]> {
  const body = JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy', callback_url: callbackUrl })
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const ids: string[] = []
  let next = 0
  const worker = async () => {
    while (next < count && !failed) {
      next++
      const response = await fetch(`${apiUrl}/api/orders`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) })
      const text = await response.text()
      if (response.status !== 202) throw new Error(`POST /api/orders answered ${response.status}: ${text}`)
      ids.push((JSON.parse(text) as { order_id: string }).order_id)
    }
  }
  await guard(Promise.all(Array.from({ length: Math.min(PLACING_CONCURRENCY, count) }, worker)))
  return ids
}

// ---------------------------------------------------------------------------------------
// The run.

// Other work on the machine moves every number here; the load average says how much there was.
const loadAtStart = loadavg()[0]!
const db = createDb({ url: config.DATABASE_URL, schema, max: 4, log })
const redis = createRedis(redisUrl, log, 'bench')
const verification = createVerificationServer(ORDERS)
const receiver = createCallbackReceiver(ORDERS, WARMUP_ORDERS)

try {
  // Seed: the schema, user1 (credit for every order) with its Redis projection, a priced
  // stock1, a token for user1. Then the orders topic, so the API finds it.
  await redis.flushdb()
  await migrateToLatest(db, schema)
  const users = await createAccounts(db, [{ id: 'user1', credit: 1_000_000_000 }])
  for (const user of users) await projectUser(redis, user)
  await createStockHistoryRepository(redis).seedStock('stock1', {
    id: 1,
    price: [STOCK_PRICE / 2, STOCK_PRICE, ''],
    time: ['09:00', '09:01', '09:02'],
    performance: 0,
  })
  const { token } = await createApiToken(db, { userId: 'user1' })
  const admin = createAdmin(kafka)
  try {
    await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 })
  } finally {
    await admin.close()
  }

  const profileFlags = CPU_PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR] : []
  const api = startChild('bourse api', ['src/cli.ts', 'api', '--port', '0'], serviceEnv, profileFlags)
  const apiUrl = (await waitForOutput(api, /api listening on (http:\/\/\S+)/))[1]!

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const body = JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1 })
  // One request first: BuyStock answers for the seeded user and stock, and the limiter is on.
  const probe = await fetch(`${apiUrl}/api/buy-stock`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })
  const probeBody = await probe.text()
  if (probe.status !== 200 || !probeBody.includes('"Accept"')) throw new Error(`BuyStock probe: ${probe.status} ${probeBody}`)
  const limit = probe.headers.get('x-ratelimit-limit')
  if (limit !== serviceConfig.RATE_LIMIT_MAX.toString()) throw new Error(`rate limit not on (x-ratelimit-limit: ${limit})`)

  const baselineRounds: LoadRound[] = []
  const apiRounds: LoadRound[] = []
  let throughput:
    | { baseline: ReturnType<typeof summarize>; buyStock: ReturnType<typeof summarize>; ratio: number; cpuRatio: number | null }
    | undefined
  const rows: Array<[string, string]> = [
    [`load average (1 min) at start, ${availableParallelism()} cores`, loadAtStart.toFixed(1)],
  ]
  if (!SKIP_THROUGHPUT) {
    const empty = startChild('empty server', ['bench/empty-server.ts'], process.env)
    const emptyUrl = (await waitForOutput(empty, /listening on (http:\/\/\S+)/))[1]!
    process.stdout.write(
      `A. BuyStock vs empty Fastify: ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s ` +
        `after ${WARMUP_SECONDS} s warm-up each\n`,
    )
    await load(`${emptyUrl}/api/buy-stock`, empty, headers, body, WARMUP_SECONDS)
    await load(`${apiUrl}/api/buy-stock`, api, headers, body, WARMUP_SECONDS)
    for (let round = 1; round <= ROUNDS; round++) {
      baselineRounds.push(await load(`${emptyUrl}/api/buy-stock`, empty, headers, body, SECONDS))
      apiRounds.push(await load(`${apiUrl}/api/buy-stock`, api, headers, body, SECONDS))
      const [b, a] = [baselineRounds.at(-1)!, apiRounds.at(-1)!]
      process.stdout.write(
        `round ${round}: empty ${b.requestsPerSecond.toFixed(0)} req/s (p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms, ` +
          `${b.serverCpuUsPerRequest ?? '?'} µs CPU/req), BuyStock ${a.requestsPerSecond.toFixed(0)} req/s ` +
          `(p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ${a.serverCpuUsPerRequest ?? '?'} µs CPU/req), ` +
          `ratio ${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}\n`,
      )
    }
    await stopChild(empty)
    const baseline = summarize(baselineRounds)
    const buyStock = summarize(apiRounds)
    const ratio = buyStock.requestsPerSecond / baseline.requestsPerSecond
    // What the ratio would be if each server had a core of its own: their CPU costs per request.
    const cpuRatio =
      baseline.serverCpuUsPerRequest && buyStock.serverCpuUsPerRequest
        ? baseline.serverCpuUsPerRequest / buyStock.serverCpuUsPerRequest
        : null
    throughput = { baseline, buyStock, ratio, cpuRatio }
    rows.push(
      ['connections / rounds / seconds per round', `${CONNECTIONS} / ${ROUNDS} / ${SECONDS}`],
      ['empty Fastify, baseline, median (req/s)', String(baseline.requestsPerSecond)],
      ['empty Fastify p50 / p99, median (ms)', `${baseline.p50Ms} / ${baseline.p99Ms}`],
      ['BuyStock, auth + rate limit, median (req/s)', String(buyStock.requestsPerSecond)],
      ['BuyStock p50 / p99, median (ms)', `${buyStock.p50Ms} / ${buyStock.p99Ms}`],
      [`BuyStock / empty req/s (target >= ${RATIO_TARGET})`, ratio.toFixed(2)],
      [
        'server CPU per request, empty / BuyStock (µs)',
        `${baseline.serverCpuUsPerRequest ?? '?'} / ${buyStock.serverCpuUsPerRequest ?? '?'}`,
      ],
      ['empty / BuyStock CPU per request (ratio on a core each)', cpuRatio?.toFixed(2) ?? '?'],
    )
  }

  let callbacks: Record<string, unknown> | undefined

  if (ORDERS > 0) {
    const verifyUrl = `${await listen(verification.server)}/verify`
    const callbackUrl = `${await listen(receiver.server)}/callbacks`
    process.stdout.write(
      `\nB. ${ORDERS} orders in flight: verification held until all wait, then answered after 0-${VERIFY_MAX_MS} ms\n`,
    )
    const pipelineEnv = { ...serviceEnv, VERIFY_URL: verifyUrl, VERIFY_TIMEOUT_MS: '600000' }
    const verifier = startChild('bourse verifier', ['src/cli.ts', 'verifier', '--group', group], pipelineEnv)
    const sender = startChild('bourse callback-sender', ['src/cli.ts', 'callback-sender'], pipelineEnv)
    // The sender is ready when its LISTEN connection is up: from then on a committed
    // callback wakes it at once.
    const listenQuery = `LISTEN "${notifyChannel('webhooks', schema)}"`
    for (let deadline = Date.now() + 30_000; ; await guard(sleep(100))) {
      const { rows: listening } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where query = ${listenQuery}`.execute(db)
      if (Number(listening[0]?.n) > 0) break
      if (Date.now() > deadline) throw new Error('the callback sender did not LISTEN within 30 s')
    }
    if (WARMUP_ORDERS > 0) {
      const warmupStarted = performance.now()
      verification.warmUp(true)
      await placeOrders(apiUrl, token, callbackUrl, WARMUP_ORDERS)
      const warmupTimeout = setTimeout(
        () => fail(new Error(`only ${receiver.warmupArrived()} of ${WARMUP_ORDERS} warm-up callbacks arrived within 60 s`)),
        60_000,
      )
      await guard(receiver.warmedUp)
      clearTimeout(warmupTimeout)
      verification.warmUp(false)
      const seconds = (performance.now() - warmupStarted) / 1000
      process.stdout.write(`warm-up: ${WARMUP_ORDERS} orders verified at once, called back within ${seconds.toFixed(1)} s\n`)
    }
    const placingStarted = performance.now()
    const ids = await placeOrders(apiUrl, token, callbackUrl, ORDERS)
    const placingSeconds = (performance.now() - placingStarted) / 1000
    process.stdout.write(`placed ${ids.length} orders in ${placingSeconds.toFixed(1)} s\n`)

    const waitingTimeout = setTimeout(
      () => fail(new Error(`only ${verification.waiting()} of ${ORDERS} orders reached the verification API within 60 s`)),
      60_000,
    )
    const releasedAt = await guard(verification.allWaiting)
    const cpuAtRelease = [cpuMs(verifier.process.pid), cpuMs(sender.process.pid)]
    clearTimeout(waitingTimeout)
    process.stdout.write(`all ${ORDERS} verifications waiting after ${((releasedAt - placingStarted) / 1000).toFixed(1)} s; released\n`)
    const arrivalTimeout = setTimeout(
      () => fail(new Error(`only ${receiver.arrivedAt.size} of ${ORDERS} callbacks arrived within 60 s of the release`)),
      60_000,
    )
    await guard(receiver.all)
    clearTimeout(arrivalTimeout)
    // How busy the two services were from the release to the last callback: a service near
    // 1 CPU-second per second is the bottleneck (PostgreSQL shares the same cores).
    const drainSeconds = (performance.now() - releasedAt) / 1000
    const cpuAtEnd = [cpuMs(verifier.process.pid), cpuMs(sender.process.pid)]
    const busy = cpuAtRelease.map((before, i) =>
      before === undefined || cpuAtEnd[i] === undefined ? null : Number(((cpuAtEnd[i]! - before) / 1000 / drainSeconds).toFixed(2)),
    )

    const delays: number[] = []
    for (const id of ids) {
      const answered = verification.answeredAt.get(id)
      const arrived = receiver.arrivedAt.get(id)
      if (answered === undefined || arrived === undefined) throw new Error(`order ${id}: answered ${answered}, arrived ${arrived}`)
      delays.push(arrived - answered)
    }
    delays.sort((a, b) => a - b)
    const filled = receiver.types.get('order.filled') ?? 0
    if (filled !== ORDERS) throw new Error(`callbacks by type: ${JSON.stringify(Object.fromEntries(receiver.types))}`)
    if (receiver.unsigned() > 0) throw new Error(`${receiver.unsigned()} callbacks without a webhook-signature`)
    const delay = {
      p50: round1(percentile(delays, 0.5)),
      p95: round1(percentile(delays, 0.95)),
      p99: round1(percentile(delays, 0.99)),
      max: round1(delays.at(-1)!),
      min: round1(delays[0]!),
    }
    callbacks = {
      orders: ORDERS,
      warmupOrders: WARMUP_ORDERS,
      inFlightAtOnce: ORDERS,
      verifyMaxMs: VERIFY_MAX_MS,
      placingSeconds: round1(placingSeconds),
      releaseToLastCallbackSeconds: round1(drainSeconds),
      cpuPerSecondDuringDrain: { verifier: busy[0], callbackSender: busy[1] },
      arrived: receiver.arrivedAt.size,
      duplicateCallbacks: receiver.duplicates(),
      duplicateVerifications: verification.duplicates(),
      delayMs: delay,
      targetP99Ms: CALLBACK_P99_TARGET_MS,
    }
    rows.push(
      ['orders in flight at once (verification held)', String(ORDERS)],
      ['warm-up orders before them (not measured)', String(WARMUP_ORDERS)],
      ['callbacks arrived / orders (all filled)', `${receiver.arrivedAt.size} / ${ORDERS}`],
      ['verification end -> callback p50 / p95 (ms)', `${delay.p50} / ${delay.p95}`],
      [`verification end -> callback p99 (target <= ${CALLBACK_P99_TARGET_MS})`, String(delay.p99)],
      ['verification end -> callback min / max (ms)', `${delay.min} / ${delay.max}`],
      ['duplicate callbacks / verification requests', `${receiver.duplicates()} / ${verification.duplicates()}`],
      ['release -> last callback (s)', drainSeconds.toFixed(1)],
      ['CPU s per s meanwhile, verifier / callback-sender', `${busy[0] ?? '?'} / ${busy[1] ?? '?'}`],
    )
  }

  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`)
  const result = {
    benchmark: 'api',
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    loadAverage1m: { atStart: round1(loadAtStart), atEnd: round1(loadavg()[0]!) },
    connections: CONNECTIONS,
    rounds: ROUNDS,
    roundSeconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    rateLimitMax: serviceConfig.RATE_LIMIT_MAX,
    authCacheMs: serviceConfig.AUTH_CACHE_MS,
    baselineRounds: baselineRounds.map((r) => ({ ...r, requestsPerSecond: Math.round(r.requestsPerSecond) })),
    buyStockRounds: apiRounds.map((r) => ({ ...r, requestsPerSecond: Math.round(r.requestsPerSecond) })),
    roundRatios: apiRounds.map((r, i) => Number((r.requestsPerSecond / baselineRounds[i]!.requestsPerSecond).toFixed(3))),
    baseline: throughput?.baseline ?? null,
    buyStock: throughput?.buyStock ?? null,
    ratio: throughput ? Number(throughput.ratio.toFixed(3)) : null,
    ratioTarget: RATIO_TARGET,
    cpuRatio: throughput?.cpuRatio == null ? null : Number(throughput.cpuRatio.toFixed(3)),
    ...(callbacks && { callbacks }),
  }
  await writeFile(new URL('./results/api.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write('\nwritten to bench/results/api.json\n')
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  // Each step on its own: one failing does not keep the others from cleaning up.
  const steps: Array<[string, () => Promise<unknown>]> = [
    ['processes', () => Promise.all(children.map(stopChild))],
    ['verification server', () => closeServer(verification.server)],
    ['callback receiver', () => closeServer(receiver.server)],
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
          if (groups.has(group)) await admin.deleteGroups({ groups: [group] })
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
