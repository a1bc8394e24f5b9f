/**
 * `npm run bench:api`: the HTTP API and the order pipeline, run as the production
 * processes (`bourse api`, `bourse verifier`, `bourse callback-sender`) on the real Redis,
 * Kafka and PostgreSQL, each in a namespace of its own (a `bench_<random>` schema, a Redis
 * database, a `bench-orders-<random>` topic), all removed at the end, also on failure.
 *
 * A. BuyStock throughput and latency, with authentication and the Redis rate limit on
 *    (a limit too high to trigger), against an empty Fastify route in another process of
 *    the same Node (`bench/empty-server.ts`) measured in the same run: autocannon, the
 *    same bodies and headers, alternating rounds after a warm-up, compared by medians.
 *    The load comes from BENCH_CALLERS distinct callers, one per connection in turn: user
 *    N with its own token (so its own rate-limit budget) asks about one of BENCH_STOCKS
 *    stocks. BENCH_CALLERS=1 is one busy caller on every connection.
 *    Every answer must be 2xx. Target: BuyStock at least 0.6 of the empty route's req/s.
 *    Also the server process's CPU time per request (Linux /proc), which other load on
 *    the machine disturbs much less than req/s: it says what a request costs.
 *
 * B. The delay from the end of an order's verification to its callback's arrival, with
 *    BENCH_ORDERS orders in flight: orders are placed through the API with a callback URL
 *    served by this process; the verification API, also served here, holds every request
 *    until all orders are waiting on it, then answers each after a random 0 to
 *    BENCH_VERIFY_MAX_MS ms, noting when it wrote each answer. Both times come from this
 *    process's clock. BENCH_BURSTS such bursts run one after the other, and the delays of
 *    all of them make the percentiles (each burst's p99 is shown too: one burst's p99 is
 *    its 10 slowest callbacks). Target: p99 at most 50 ms. Every callback must arrive. Before them,
 *    BENCH_WARMUP_ORDERS orders go through the same pipeline, verified at once and not
 *    measured: the services just started, and their first orders pay one-time costs (code
 *    not yet optimized, HTTP connections and parser, each PostgreSQL connection's first
 *    plans) that are not the delay this part measures. 0 measures from cold.
 *
 * Options (env): BENCH_CONNECTIONS (50), BENCH_CALLERS (50), BENCH_STOCKS (10), BENCH_ROUNDS (3), BENCH_SECONDS (5 per round),
 * BENCH_WARMUP_SECONDS (5), BENCH_ORDERS (1000; 0 skips B), BENCH_BURSTS (3), BENCH_VERIFY_MAX_MS (2000),
 * BENCH_WARMUP_ORDERS (200), BENCH_REDIS_DB (10, flushed before and after), BENCH_CPU_PROF
 * (a directory: the API, verifier and callback sender write V8 CPU profiles there when they stop),
 * BENCH_SKIP_THROUGHPUT (1 skips A), BENCH_SETTLE_SECONDS (5: the pause between A and B).
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { createApiToken } from '../src/auth/index.ts'
import { createStockHistoryRepository } from '../src/market/index.ts'
import { createPrng } from '../src/market/tick-generator.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { createDb, notifyChannel } from '../src/platform/db/index.ts'
import type { Database } from '../src/database.ts'
import { createAdmin } from '../src/platform/kafka/clients.ts'
import { createLogger } from '../src/platform/logger.ts'
import { createRedis } from '../src/platform/redis.ts'
import { createAccounts, projectUser } from '../src/trading/index.ts'
import {
  alternateRounds,
  API_LISTENING,
  assertRateLimitOn,
  baselineRows,
  type Child,
  compareSummaries,
  cpuMs,
  cpuProfileFlags,
  cpuRows,
  createFailure,
  createProcesses,
  EMPTY_LISTENING,
  loadAverage1m,
  type LoadRound,
  loadRound,
  machineCpus,
  namespaceCleanup,
  percentile,
  pinCores,
  prepareNamespace,
  printTable,
  redisDbUrl,
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
  type Summary,
  type Validity,
  validityRow,
  writeResult,
} from './lib.ts'

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5)
const ORDERS = Number(process.env.BENCH_ORDERS ?? 1000)
const BURSTS = Math.max(1, Number(process.env.BENCH_BURSTS ?? 3))
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 5)
const VERIFY_MAX_MS = Number(process.env.BENCH_VERIFY_MAX_MS ?? 2000)
const WARMUP_ORDERS = Number(process.env.BENCH_WARMUP_ORDERS ?? 200)
const REDIS_DB = Number(process.env.BENCH_REDIS_DB ?? 10)
const profileFlags = cpuProfileFlags(process.env.BENCH_CPU_PROF)
const SKIP_THROUGHPUT = process.env.BENCH_SKIP_THROUGHPUT === '1'
const CALLERS = Math.max(1, Number(process.env.BENCH_CALLERS ?? 50))
const STOCKS = Math.max(1, Number(process.env.BENCH_STOCKS ?? 10))
const RATIO_TARGET = 0.6
/** BuyStock's server CPU per request over the empty route's, at most. */
const CPU_TARGET = 1.5
const CALLBACK_P99_TARGET_MS = 50
/** Orders the bench places at once (the API's order route, not what is measured). */
const PLACING_CONCURRENCY = 32
const STOCK_PRICE = 10

const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = runSuffix()
const schema = `bench_${suffix}`
const topic = `bench-orders-${suffix}`
const group = `bench-verifier-${suffix}`
const redisUrl = redisDbUrl(config.REDIS_URL, REDIS_DB)
const kafka = { brokers: kafkaBrokers(config) }

/** The environment of every service process: this run's namespaces, quiet logs. */
const serviceEnv = serviceEnvFor(process.env, { schema, redisUrl }, { ORDERS_TOPIC: topic, CALLBACK_ALLOWED_NETWORKS: '127.0.0.1' })
const serviceConfig = loadConfig(serviceEnv)

// Any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).
const failure = createFailure()
const { fail, guard } = failure
const pinning = pinCores()
const processes = createProcesses(failure, pinning)

// ---------------------------------------------------------------------------------------
// HTTP servers of this process.

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
// B. Callback delay after verification.

/**
 * The callback sender's claim lease, given to it as `--lease-ms` (its default): a claim
 * moves `next_attempt_at` to the lease's end, and marking the delivery leaves it there.
 */
const SENDER_LEASE_MS = 30_000

/**
 * Where each callback's delay went, from the database's own times of every order: the
 * verifier's finishing statement began at `finished_at` (`now()` of its transaction) and
 * the sender's claim at `next_attempt_at` less the lease. Three stages: the answer's wait in
 * the verifier (read, batched, queued for a free batch), the finish and the sender's wake
 * (the statement, its commit and NOTIFY, the sender's claim query), the delivery (the
 * claim's answer, signing, the POST). Each with its p50 and p99 over all callbacks and
 * its mean over the slowest 1% of them, which says what the tail is made of. The clocks
 * are the machine's one wall clock (this process's monotonic times are moved onto it).
 */
async function callbackStages(ids: readonly string[], answeredAt: ReadonlyMap<string, number>, arrivedAt: ReadonlyMap<string, number>) {
  const { rows } = await sql<{ id: string; finished: number; claimed: number }>`
    select o.id, extract(epoch from o.finished_at) * 1000 as finished,
           extract(epoch from w.next_attempt_at) * 1000 - ${SENDER_LEASE_MS} as claimed
    from orders o join webhook_deliveries w on w.order_id = o.id
    where o.id = any(${ids as string[]}::uuid[])
  `.execute(db)
  if (rows.length !== ids.length) throw new Error(`stages: ${rows.length} of ${ids.length} orders found with their callbacks`)
  const wall = (monotonic: number) => performance.timeOrigin + monotonic
  const spans = rows.map((r) => {
    const answered = wall(answeredAt.get(r.id)!)
    const arrived = wall(arrivedAt.get(r.id)!)
    return { total: arrived - answered, parts: [Number(r.finished) - answered, Number(r.claimed) - Number(r.finished), arrived - Number(r.claimed)] }
  })
  const slowest = [...spans].sort((a, b) => b.total - a.total).slice(0, Math.max(1, Math.round(spans.length / 100)))
  const names = ['verifier: answer read, batched, queued', 'finish statement, commit, NOTIFY, sender claim', 'claim answered, signed, POSTed']
  return names.map((name, i) => {
    const values = spans.map((s) => s.parts[i]!).sort((a, b) => a - b)
    return {
      name,
      p50: round1(percentile(values, 0.5)),
      p99: round1(percentile(values, 0.99)),
      meanInSlowest: round1(slowest.reduce((sum, s) => sum + s.parts[i]!, 0) / slowest.length),
    }
  })
}

/**
 * The verification API: in each burst, holds every request until `expected` distinct
 * orders wait on it, then answers each `{"result":0}` after a random delay, noting when it
 * wrote the answer. While warming up, it answers every request at once instead.
 */
function createVerificationServer(expected: number) {
  const random = createPrng(Number.parseInt(suffix.slice(0, 8), 16))
  let held = new Map<string, ServerResponse[]>()
  const answeredAt = new Map<string, number>()
  let allWaiting = Promise.withResolvers<number>()
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
    /** Resolves (at that time) when every order of the burst waits on a verification. */
    allWaiting: () => allWaiting.promise,
    /** Starts holding requests again, for the next burst. */
    nextBurst: () => {
      held = new Map()
      released = false
      allWaiting = Promise.withResolvers<number>()
    },
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
function createCallbackReceiver(warmup: number) {
  const arrivedAt = new Map<string, number>()
  const types = new Map<string, number>()
  let expected = 0
  let all = Promise.withResolvers<void>()
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
    /** Resolves when `count` more (measured) callbacks arrived than so far. */
    expect: (count: number) => {
      expected = arrivedAt.size + count
      all = Promise.withResolvers<void>()
      return all.promise
    },
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
    while (next < count && !failure.failed) {
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
const loadAtStart = loadAverage1m()
const db = createDb<Database>({ url: config.DATABASE_URL, schema, max: 4, log })
const redis = createRedis(redisUrl, log, 'bench')
const verification = createVerificationServer(ORDERS)
const receiver = createCallbackReceiver(WARMUP_ORDERS)

try {
  // Seed: the schema, user1 (credit for every order) with its Redis projection, a priced
  // stock1, a token for user1. Then the orders topic, so the API finds it.
  await prepareNamespace(db, redis, schema)
  const userIds = Array.from({ length: CALLERS }, (_, i) => `user${i + 1}`)
  const users = await createAccounts(
    db,
    userIds.map((id) => ({ id, credit: 1_000_000_000 })),
  )
  for (const user of users) await projectUser(redis, user)
  const stocks = Array.from({ length: STOCKS }, (_, i) => `stock${i + 1}`)
  const histories = createStockHistoryRepository(redis)
  for (const [i, stock] of stocks.entries()) {
    await histories.seedStock(stock, {
      id: i + 1,
      price: [STOCK_PRICE / 2, STOCK_PRICE, ''],
      time: ['09:00', '09:01', '09:02'],
      performance: 0,
    })
  }
  const tokens: string[] = []
  for (const userId of userIds) tokens.push((await createApiToken(db, { userId })).token)
  const token = tokens[0]!
  const admin = createAdmin(kafka)
  try {
    await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 })
  } finally {
    await admin.close()
  }

  const api = startApi(processes, serviceEnv, profileFlags)
  const apiUrl = await processes.waitForUrl(api, API_LISTENING)

  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const body = JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1 })
  // One request first: BuyStock answers for the seeded user and stock, and the limiter is on.
  const probe = await fetch(`${apiUrl}/api/buy-stock`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) })
  const probeBody = await probe.text()
  if (probe.status !== 200 || !probeBody.includes('"Accept"')) throw new Error(`BuyStock probe: ${probe.status} ${probeBody}`)
  assertRateLimitOn(probe, serviceConfig.RATE_LIMIT_MAX)

  let baselineRounds: LoadRound[] = []
  let apiRounds: LoadRound[] = []
  let throughput: { baseline: Summary; buyStock: Summary; ratio: number; cpuRatio: number | null; validity: Validity } | undefined
  const rows: Row[] = [
    [`load average (1 min) at start, ${machineCpus} cores`, loadAtStart.toFixed(1)],
    ['pinning', pinning.description],
  ]
  if (!SKIP_THROUGHPUT) {
    const empty = startEmptyServer(processes, profileFlags)
    const emptyUrl = await processes.waitForUrl(empty, EMPTY_LISTENING)
    process.stdout.write(
      `A. BuyStock vs empty Fastify: ${CONNECTIONS} connections, ${CALLERS} callers, ${STOCKS} stocks, ${ROUNDS} rounds of ${SECONDS} s ` +
        `after ${WARMUP_SECONDS} s warm-up each\n`,
    )
    // Caller i: user i+1 with its own token (its own rate-limit budget), buying one of the stocks.
    const callers = userIds.map((user, i) => ({
      headers: { ...headers, authorization: `Bearer ${tokens[i]}` },
      body: JSON.stringify({ user, stockname: stocks[i % stocks.length], quantity: 1 }),
    }))
    const load = (url: string, server: Child, seconds: number) =>
      loadRound({ url: `${url}/api/buy-stock`, server, headers, body, connections: CONNECTIONS, seconds, callers }, failure)
    const rounds = await alternateRounds(
      (seconds) => load(emptyUrl, empty, seconds),
      (seconds) => load(apiUrl, api, seconds),
      { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS },
      (round, b, a) =>
        process.stdout.write(
          `round ${round}: empty ${b.requestsPerSecond.toFixed(0)} req/s ${roundDetails(b)}, ` +
            `BuyStock ${a.requestsPerSecond.toFixed(0)} req/s ${roundDetails(a)}, ` +
            `ratio ${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}\n`,
        ),
    )
    baselineRounds = rounds.baselineRounds
    apiRounds = rounds.subjectRounds
    await stopChild(empty)
    const baseline = summarize(baselineRounds)
    const buyStock = summarize(apiRounds)
    const { ratio, cpuRatio } = compareSummaries(baseline, buyStock)
    throughput = { baseline, buyStock, ratio, cpuRatio, validity: rounds.validity }
    rows.push(
      settingsRow(CONNECTIONS, ROUNDS, SECONDS),
      ...baselineRows(baseline),
      ['BuyStock, auth + rate limit, median (req/s)', String(buyStock.requestsPerSecond)],
      ['BuyStock p50 / p99, median (ms)', `${buyStock.p50Ms} / ${buyStock.p99Ms}`],
      [`BuyStock / empty req/s (target >= ${RATIO_TARGET})`, ratio.toFixed(2)],
      ...cpuRows('BuyStock', baseline, buyStock, cpuRatio),
      [`BuyStock / empty server CPU per request (target <= ${CPU_TARGET})`, cpuRatio ? (1 / cpuRatio).toFixed(2) : '?'],
      validityRow(rounds.validity),
    )
  }

  let callbacks: Record<string, unknown> | undefined

  if (ORDERS > 0) {
    // Part A's load leaves work behind (the API's garbage, the kernel's sockets in
    // TIME_WAIT): part B starts once the machine has had a few quiet seconds.
    if (!SKIP_THROUGHPUT) await guard(sleep(SETTLE_SECONDS * 1000))
    const verifyUrl = `${await listen(verification.server)}/verify`
    const callbackUrl = `${await listen(receiver.server)}/callbacks`
    process.stdout.write(
      `\nB. ${BURSTS} bursts of ${ORDERS} orders in flight: verification held until all wait, then answered after 0-${VERIFY_MAX_MS} ms\n`,
    )
    const pipelineEnv = { ...serviceEnv, VERIFY_URL: verifyUrl, VERIFY_TIMEOUT_MS: '600000' }
    const verifier = processes.start('bourse verifier', ['src/cli.ts', 'verifier', '--group', group], pipelineEnv, profileFlags)
    const sender = processes.start('bourse callback-sender', ['src/cli.ts', 'callback-sender', '--lease-ms', String(SENDER_LEASE_MS)], pipelineEnv, profileFlags)
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
    // Bursts one after the other; the delays of all of them make the percentiles (a burst's
    // p99 is its 10 slowest callbacks: several bursts make the tail less a matter of chance).
    const ids: string[] = []
    const bursts: Array<{ placingSeconds: number; releaseToLastCallbackSeconds: number; p50: number; p99: number; cpu: Array<number | null> }> = []
    for (let burst = 1; burst <= BURSTS; burst++) {
      if (burst > 1) verification.nextBurst()
      const allArrived = receiver.expect(ORDERS)
      const placingStarted = performance.now()
      const burstIds = await placeOrders(apiUrl, token, callbackUrl, ORDERS)
      const placingSeconds = (performance.now() - placingStarted) / 1000
      const waitingTimeout = setTimeout(
        () => fail(new Error(`only ${verification.waiting()} of ${ORDERS} orders reached the verification API within 60 s`)),
        60_000,
      )
      const releasedAt = await guard(verification.allWaiting())
      const cpuAtRelease = [cpuMs(verifier.process.pid), cpuMs(sender.process.pid)]
      clearTimeout(waitingTimeout)
      const arrivalTimeout = setTimeout(
        () => fail(new Error(`only ${receiver.arrivedAt.size} callbacks arrived, burst ${burst} not complete within 60 s of its release`)),
        60_000,
      )
      await guard(allArrived)
      clearTimeout(arrivalTimeout)
      // How busy the two services were from the release to the last callback: a service near
      // 1 CPU-second per second is the bottleneck (PostgreSQL shares the same cores).
      const drainSeconds = (performance.now() - releasedAt) / 1000
      const cpuAtEnd = [cpuMs(verifier.process.pid), cpuMs(sender.process.pid)]
      const cpu = cpuAtRelease.map((before, i) =>
        before === undefined || cpuAtEnd[i] === undefined ? null : Number(((cpuAtEnd[i]! - before) / 1000 / drainSeconds).toFixed(2)),
      )
      const burstDelays = burstIds.map((id) => receiver.arrivedAt.get(id)! - verification.answeredAt.get(id)!).sort((a, b) => a - b)
      const summary = {
        placingSeconds: round1(placingSeconds),
        releaseToLastCallbackSeconds: round1(drainSeconds),
        p50: round1(percentile(burstDelays, 0.5)),
        p99: round1(percentile(burstDelays, 0.99)),
        cpu,
      }
      bursts.push(summary)
      ids.push(...burstIds)
      process.stdout.write(
        `burst ${burst}: ${ORDERS} placed in ${summary.placingSeconds} s, all waiting, released; last callback after ` +
          `${summary.releaseToLastCallbackSeconds} s; delay p50 ${summary.p50} ms, p99 ${summary.p99} ms\n`,
      )
    }
    const busy = [0, 1].map((i) => {
      const values = bursts.map((b) => b.cpu[i]).filter((v): v is number => v !== null)
      return values.length === 0 ? null : Number((values.reduce((a, b) => a + b, 0) / values.length).toFixed(2))
    })

    const delays: number[] = []
    for (const id of ids) {
      const answered = verification.answeredAt.get(id)
      const arrived = receiver.arrivedAt.get(id)
      if (answered === undefined || arrived === undefined) throw new Error(`order ${id}: answered ${answered}, arrived ${arrived}`)
      delays.push(arrived - answered)
    }
    delays.sort((a, b) => a - b)
    const filled = receiver.types.get('order.filled') ?? 0
    if (filled !== ORDERS * BURSTS) throw new Error(`callbacks by type: ${JSON.stringify(Object.fromEntries(receiver.types))}`)
    if (receiver.unsigned() > 0) throw new Error(`${receiver.unsigned()} callbacks without a webhook-signature`)
    const delay = {
      p50: round1(percentile(delays, 0.5)),
      p95: round1(percentile(delays, 0.95)),
      p99: round1(percentile(delays, 0.99)),
      max: round1(delays.at(-1)!),
      min: round1(delays[0]!),
    }
    const stages = await callbackStages(ids, verification.answeredAt, receiver.arrivedAt)
    callbacks = {
      orders: ORDERS * BURSTS,
      bursts: BURSTS,
      warmupOrders: WARMUP_ORDERS,
      inFlightAtOnce: ORDERS,
      verifyMaxMs: VERIFY_MAX_MS,
      perBurst: bursts,
      cpuPerSecondDuringDrain: { verifier: busy[0], callbackSender: busy[1] },
      arrived: receiver.arrivedAt.size,
      duplicateCallbacks: receiver.duplicates(),
      duplicateVerifications: verification.duplicates(),
      delayMs: delay,
      targetP99Ms: CALLBACK_P99_TARGET_MS,
      stagesMs: stages,
    }
    rows.push(
      ['orders in flight at once (verification held) x bursts', `${ORDERS} x ${BURSTS}`],
      ['warm-up orders before them (not measured)', String(WARMUP_ORDERS)],
      ['callbacks arrived / orders (all filled)', `${receiver.arrivedAt.size} / ${ORDERS * BURSTS}`],
      ['verification end -> callback p50 / p95 (ms)', `${delay.p50} / ${delay.p95}`],
      [`verification end -> callback p99, all bursts (target <= ${CALLBACK_P99_TARGET_MS})`, String(delay.p99)],
      ['p99 of each burst (ms)', bursts.map((b) => b.p99).join(' / ')],
      ['verification end -> callback min / max (ms)', `${delay.min} / ${delay.max}`],
      ...stages.map((stage): [string, string] => [
        `  ${stage.name}: p50 / p99 / mean in the slowest 1% (ms)`,
        `${stage.p50} / ${stage.p99} / ${stage.meanInSlowest}`,
      ]),
      ['duplicate callbacks / verification requests', `${receiver.duplicates()} / ${verification.duplicates()}`],
      ['release -> last callback, each burst (s)', bursts.map((b) => b.releaseToLastCallbackSeconds).join(' / ')],
      ['CPU s per s meanwhile (mean), verifier / callback-sender', `${busy[0] ?? '?'} / ${busy[1] ?? '?'}`],
    )
  }

  printTable(rows)
  const result = {
    benchmark: 'api',
    date: new Date().toISOString(),
    node: process.version,
    cpus: machineCpus,
    ...runConditions(pinning, loadAtStart),
    connections: CONNECTIONS,
    callers: CALLERS,
    stocks: STOCKS,
    rounds: ROUNDS,
    roundSeconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    rateLimitMax: serviceConfig.RATE_LIMIT_MAX,
    authCacheMs: serviceConfig.AUTH_CACHE_MS,
    baselineRounds: baselineRounds.map((r) => ({ ...r, requestsPerSecond: Math.round(r.requestsPerSecond) })),
    buyStockRounds: apiRounds.map((r) => ({ ...r, requestsPerSecond: Math.round(r.requestsPerSecond) })),
    roundRatios: roundRatios(apiRounds, baselineRounds),
    baseline: throughput?.baseline ?? null,
    buyStock: throughput?.buyStock ?? null,
    ratio: throughput ? Number(throughput.ratio.toFixed(3)) : null,
    ratioTarget: RATIO_TARGET,
    cpuRatio: throughput?.cpuRatio == null ? null : Number(throughput.cpuRatio.toFixed(3)),
    cpuPerRequestRatio: throughput?.cpuRatio == null ? null : Number((1 / throughput.cpuRatio).toFixed(3)),
    cpuPerRequestTarget: CPU_TARGET,
    validity: throughput?.validity ?? null,
    ...(callbacks && { callbacks }),
  }
  await writeResult('api', result)
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  await runCleanup([
    ['processes', () => processes.stopAll()],
    ['verification server', () => closeServer(verification.server)],
    ['callback receiver', () => closeServer(receiver.server)],
    ...namespaceCleanup({ db, schema, kafka, topic, groups: [group], redis }),
  ])
}
