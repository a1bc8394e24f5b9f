/**
 * `npm run bench:btc`: the BTC orders API, run as the production process (`bourse api`)
 * on the real Redis and PostgreSQL, in a namespace of its own (a `bench_<random>` schema,
 * Redis database BENCH_REDIS_DB, a `bench-orders-<random>` topic the API's producer
 * finds), all removed at the end, also on failure. The quote is written by this process
 * into `bourse:btc:quote` every second, in the poller's format, with `fetched_at` now
 * (no poller or providers run: the quote's age never reaches BTC_PRICE_MAX_AGE_MS, and
 * the load generator keeps the CPU the poller would use). Bearer tokens of BENCH_CALLERS
 * users, the Redis rate limiter on with a limit never reached.
 *
 * A. Order placement: `POST /api/btc/orders` with a unique `Idempotency-Key` per request
 *    (so each one is a new order, looked up first as a retry would be) and varied bodies
 *    (40 requests in turn per connection: the users, the three currencies, amounts of
 *    10.00-99.99), against the empty Fastify route of `bench/empty-server.ts` taking the
 *    same requests, in alternating rounds after a warm-up, compared by medians. Every
 *    answer must be 201, and afterwards the orders table must hold the orders answered 201
 *    (and at most one more per connection and round: autocannon drops the answers in flight
 *    when a round ends) and the totals row their sum. Target: at least 0.4 of the empty route's
 *    req/s (each order is committed to PostgreSQL, under the one totals row's lock).
 *
 * B. The same near the cap: before every round the orders are removed and one order
 *    brings the total to BTC_CAP minus BENCH_BTC_HEADROOM BTC. One request in four is
 *    a small order (1.00-9.99, never more than the headroom in a round) that is accepted,
 *    three are orders of 1,000,000.00 (about 20 BTC) that are refused with 409
 *    `btc_cap_exceeded`; both kinds go through the same conditional update of the totals
 *    row. Accepted and refused req/s are reported apart; their sum is compared with the
 *    empty route. After every round: no total past the cap, the total the sum of the orders.
 *
 * In the measured rounds of A and B, the API's PostgreSQL backends (its connections found in
 * /proc and matched to `pg_stat_activity` by port) are looked at every 25 ms: the share of
 * samples idle in the API's pool, running, or waiting (on the totals row's lock, on the
 * WAL flush of a commit...) says where an order's time goes, and their CPU time per answer
 * is PostgreSQL's share of the work.
 *
 * C. Paging `GET /api/btc/orders` over BENCH_BTC_ORDERS orders (1,000,000, all of one
 *    user: the hard case for the user's list, and the same rows for an admin's list of
 *    everyone's), inserted by one INSERT ... SELECT with `created_at` spread over about
 *    two weeks (two orders per instant, so the id breaks ties), the totals row set to their
 *    sum, the table analysed. Pages of BENCH_BTC_PAGE_LIMIT (100) orders: page 1 against
 *    page BENCH_BTC_PAGE (10,000 = the last page of 1,000,000). Page 10,000's cursor is
 *    computed in SQL (the key of the 999,900th order, encoded as the API encodes it) and
 *    checked against the API: page 9,999 read with its own computed cursor must give it as
 *    `next_cursor`. Then BENCH_ROUNDS rounds of BENCH_BTC_PAGE_SAMPLES sequential requests
 *    per page, alternating page 1 and the deep page on one keep-alive connection, for the
 *    user's list then the admin's; latencies are compared by medians. Target: the deep page
 *    within 1.2x of page 1. Also EXPLAIN ANALYZE of both pages' queries (the repository's
 *    query): each must be an index scan of a list index in its order (no sort) whose bound is
 *    the cursor (no row read only to be filtered out). With every order one user's, PostgreSQL
 *    may read the user's list from either index: both are in list order.
 *
 * Options (env): BENCH_CONNECTIONS (200: orders are bound by the commit's latency, not the CPU, and
 * are placed a batch per commit, so the load needs enough requests in flight to fill the batches;
 * the empty route gets the same connections), BENCH_CALLERS (10), BENCH_ROUNDS (3), BENCH_SECONDS (5 per round),
 * BENCH_WARMUP_SECONDS (5), BENCH_BTC_HEADROOM (10 BTC), BENCH_BTC_ORDERS (1,000,000; 0 skips C),
 * BENCH_BTC_PAGE_LIMIT (100), BENCH_BTC_PAGE (10,000; at most the last full page), BENCH_BTC_PAGE_SAMPLES (200),
 * BENCH_REDIS_DB (8, flushed before and after; the other benchmarks use 9 to 12, the tests 13 and up), BENCH_CPU_PROF (a
 * directory: the API and the empty server write V8 CPU profiles there when they stop),
 * BENCH_SKIP_PLACEMENT (1 skips A and B).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type autocannon from 'autocannon'
import { CompiledQuery, sql } from 'kysely'
import { createApiToken } from '../src/auth/index.ts'
import { BTC_QUOTE_KEY } from '../src/btc/quote.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { createDb } from '../src/platform/db/index.ts'
import { encodeCursor } from '../src/platform/db/keyset.ts'
import type { Database, Db } from '../src/database.ts'
import { createAdmin } from '../src/platform/kafka/clients.ts'
import { createLogger } from '../src/platform/logger.ts'
import { createRedis } from '../src/platform/redis.ts'
import { createAccounts } from '../src/trading/index.ts'
import {
  alternateRounds,
  API_LISTENING,
  assertRateLimitOn,
  baselineRows,
  type Child,
  compareSummaries,
  connectionPorts,
  cpuMs,
  cpuProfileFlags,
  cpuRows,
  createFailure,
  createProcesses,
  EMPTY_LISTENING,
  intEnv,
  loadAverage1m,
  type LoadRound,
  loadRound,
  machineCpus,
  median,
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
  validityRow,
  writeResult,
} from './lib.ts'

const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 200, 1)
const CALLERS = intEnv('BENCH_CALLERS', 10, 1)
const ROUNDS = intEnv('BENCH_ROUNDS', 3, 1)
const SECONDS = intEnv('BENCH_SECONDS', 5, 1)
const WARMUP_SECONDS = intEnv('BENCH_WARMUP_SECONDS', 5, 1)
const HEADROOM_BTC = intEnv('BENCH_BTC_HEADROOM', 10, 1)
const ORDERS = intEnv('BENCH_BTC_ORDERS', 1_000_000, 0)
const PAGE_LIMIT = intEnv('BENCH_BTC_PAGE_LIMIT', 100, 1)
const PAGE_SAMPLES = intEnv('BENCH_BTC_PAGE_SAMPLES', 200, 1)
const REDIS_DB = intEnv('BENCH_REDIS_DB', 8, 0)
const SKIP_PLACEMENT = process.env.BENCH_SKIP_PLACEMENT === '1'
const profileFlags = cpuProfileFlags(process.env.BENCH_CPU_PROF)
/** The deep page: the one asked for, or the last full page when there are fewer orders. */
const DEEP_PAGE = Math.min(intEnv('BENCH_BTC_PAGE', 10_000, 2), Math.max(2, Math.floor(ORDERS / PAGE_LIMIT)))
const PLACEMENT_TARGET = 0.4
const PAGING_TARGET = 1.2
/** Large enough that part A never reaches it (its orders buy well under 100 BTC). */
const CAP = 1_000_000
/** Part B's refused orders: 1,000,000.00 in any currency is about 17-24 BTC, more than the headroom. */
const REFUSED_AMOUNT = '1000000.00'
/** The prices of the quote written during the run. */
const PRICES = { EUR: '50000.00', GBP: '42000.00', USD: '58000.00' } as const
const CURRENCIES = ['EUR', 'GBP', 'USD'] as const
/** How often the quote is rewritten, with `fetched_at` now. */
const QUOTE_EVERY_MS = 1000
/** The user holding every order of part C. */
const PAGE_USER = 'user1'
/** How many requests of each page warm up a list before its rounds. */
const PAGE_WARMUP = 30

const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = runSuffix()
const schema = `bench_${suffix}`
const topic = `bench-orders-${suffix}`
const redisUrl = redisDbUrl(config.REDIS_URL, REDIS_DB)
const databasePort = Number(new URL(config.DATABASE_URL).port || 5432)
const kafka = { brokers: kafkaBrokers(config) }
const serviceEnv = serviceEnvFor(process.env, { schema, redisUrl }, { ORDERS_TOPIC: topic, BTC_CAP: String(CAP) })
const serviceConfig = loadConfig(serviceEnv)

// Any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).
const failure = createFailure()
const { guard } = failure
const pinning = pinCores()
const processes = createProcesses(failure, pinning)

// ---------------------------------------------------------------------------------------
// The quote, and the orders table.

/** Writes the quote as the poller does, fetched now. */
async function writeQuote(redis: ReturnType<typeof createRedis>): Promise<void> {
  const fetchedAt = new Date().toISOString()
  const quote = Object.fromEntries(CURRENCIES.map((c) => [c, { price: PRICES[c], source: 'bench', fetched_at: fetchedAt }]))
  await redis.set(BTC_QUOTE_KEY, JSON.stringify(quote))
}

/** The orders' count and sum, and the totals row. */
async function orderTotals(db: Db): Promise<{ orders: number; sum: string; total: string }> {
  const { rows } = await sql<{ orders: string; sum: string; total: string }>`
    select count(*) as orders, coalesce(sum(btc_amount), 0)::numeric(20, 8)::text as sum,
      (select btc_total::text from btc_totals) as total
    from btc_orders
  `.execute(db)
  const row = rows[0]!
  return { orders: Number(row.orders), sum: row.sum, total: row.total }
}

/** Throws unless the totals row is the sum of the orders and within the cap. */
async function assertTotals(db: Db, what: string): Promise<{ orders: number; total: string }> {
  const totals = await orderTotals(db)
  if (totals.sum !== totals.total) throw new Error(`${what}: the totals row holds ${totals.total} but the orders sum to ${totals.sum}`)
  if (Number(totals.total) > CAP) throw new Error(`${what}: the total ${totals.total} is past the cap ${CAP}`)
  return totals
}

/** Removes every order and places one that brings the total to the cap minus the headroom. */
async function fillToHeadroom(db: Db): Promise<void> {
  const filled = CAP - HEADROOM_BTC
  await db.transaction().execute(async (trx) => {
    await sql`truncate btc_orders`.execute(trx)
    await sql`
      insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, created_at)
      values (gen_random_uuid(), ${PAGE_USER}, 'EUR', ${filled}::numeric * ${PRICES.EUR}::numeric, ${PRICES.EUR}::numeric,
        ${filled}::numeric, ${filled}::numeric, 'bench', now(), date_trunc('milliseconds', now()))
    `.execute(trx)
    await sql`update btc_totals set btc_total = ${filled}::numeric`.execute(trx)
  })
}

/**
 * Replaces the orders with `count` orders of `user`, newest now, two per instant 2.5 s
 * apart going back (about two weeks for 1,000,000), and the totals row with their sum.
 */
async function insertPagingOrders(db: Db, user: string, count: number): Promise<void> {
  await sql`truncate btc_orders`.execute(db)
  await sql`
    insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, created_at)
    select id, user_id, currency, amount, btc_price, btc_amount,
      sum(btc_amount) over (order by created_at, id), price_source, price_fetched_at, created_at
    from (
      select gen_random_uuid() as id, ${user} as user_id, 'EUR' as currency, o.amount, ${PRICES.EUR}::numeric as btc_price,
        trunc(o.amount / ${PRICES.EUR}::numeric, 8) as btc_amount, 'bench' as price_source, o.created_at as price_fetched_at, o.created_at
      from generate_series(1, ${count}::int) as n,
        lateral (select (10 + n % 990 + (n % 100) / 100.0)::numeric(14, 2) as amount,
          date_trunc('milliseconds', now()) - (n / 2) * interval '2500 milliseconds' as created_at) as o
    ) as generated
  `.execute(db)
  await sql`update btc_totals set btc_total = (select coalesce(sum(btc_amount), 0) from btc_orders)`.execute(db)
  await sql`analyze btc_orders`.execute(db)
}

/** The query `listBtcOrders` runs for a page after `after` (the repository's shape), for EXPLAIN. */
function pageQuery(db: Db, owner: string | undefined, after: { created_at: string; id: string } | undefined): CompiledQuery {
  let query = db.selectFrom('btc_orders').selectAll()
  if (owner !== undefined) query = query.where('user_id', '=', owner)
  if (after) query = query.where(sql<boolean>`(created_at, id) < (${after.created_at}::timestamptz, ${after.id}::uuid)`)
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(PAGE_LIMIT + 1).compile()
}

interface PlanCheck {
  /** The plan's node types, outermost first, with the index scanned. */
  nodes: string[]
  executionMs: number
  rowsRemovedByFilter: number
}

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Index Cond'?: string
  'Rows Removed by Filter'?: number
  Plans?: PlanNode[]
}

/** The indexes a page of orders may be read from, newest first. */
const LIST_INDEXES = ['btc_orders_user_newest', 'btc_orders_newest']

/**
 * EXPLAIN ANALYZE of `query`; throws unless it is an index scan of a list index with no
 * sort and no row read only to be filtered out (the cursor's bound is where the scan starts).
 */
async function checkPlan(db: Db, query: CompiledQuery): Promise<PlanCheck> {
  const result = await db.executeQuery<{ 'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }> }>(
    CompiledQuery.raw(`explain (analyze, format json) ${query.sql}`, [...query.parameters]),
  )
  const explained = result.rows[0]!['QUERY PLAN'][0]!
  const nodes: string[] = []
  let removed = 0
  const walk = (node: PlanNode) => {
    const cond = node['Index Cond'] ? ` (${node['Index Cond']})` : ''
    nodes.push(node['Index Name'] ? `${node['Node Type']} using ${node['Index Name']}${cond}` : node['Node Type'])
    removed += node['Rows Removed by Filter'] ?? 0
    for (const child of node.Plans ?? []) walk(child)
  }
  walk(explained.Plan)
  const scansListIndex = nodes.some((n) => n.startsWith('Index Scan using') && LIST_INDEXES.some((index) => n.includes(` ${index}`)))
  if (nodes.some((n) => n.includes('Sort')) || !scansListIndex || removed > 0) {
    throw new Error(`the page query is not one index scan in list order: ${nodes.join(' > ')}; ${removed} rows filtered out`)
  }
  return { nodes, executionMs: round1(explained['Execution Time']), rowsRemovedByFilter: removed }
}

/** The cursor the API gives after the `position`th order (1-based) of the list, newest first. */
async function cursorAfter(db: Db, owner: string | undefined, position: number): Promise<{ cursor: string; key: { created_at: string; id: string } }> {
  let query = db.selectFrom('btc_orders').select(['created_at', 'id'])
  if (owner !== undefined) query = query.where('user_id', '=', owner)
  const row = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').offset(position - 1).limit(1).executeTakeFirstOrThrow()
  const key = { created_at: row.created_at.toISOString(), id: row.id }
  return { cursor: encodeCursor([key.created_at, key.id]), key }
}

// ---------------------------------------------------------------------------------------
// Where the API's PostgreSQL backends spend a round.

/** How often the API's backends are looked at during a round. */
const SAMPLE_EVERY_MS = 25

/** What the API's backends were doing during rounds, and the CPU they used. */
interface BackendUse {
  /** Samples of each backend by state: `idle` (in the API's pool), `active` (running), or its wait event. */
  samples: Map<string, number>
  cpuMs: number
  requests: number
}

/** The pids of the PostgreSQL backends serving process `pid`, matched by their client ports. */
async function backendsOf(pid: number | undefined): Promise<number[]> {
  const ports = connectionPorts(pid, databasePort)
  if (ports.length === 0) return []
  const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where client_port = any(${ports}::int[])`.execute(db)
  return rows.map((r) => r.pid)
}

/**
 * Runs `round` while sampling what the API's backends wait on, adding the samples, their
 * CPU time and the round's answers to `use`.
 */
async function observeBackends(apiPid: number | undefined, use: BackendUse, round: () => Promise<LoadRound>): Promise<LoadRound> {
  const pids = await backendsOf(apiPid)
  const cpuBefore = pids.map((p) => cpuMs(p))
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await sql<{ state: string | null; wait: string | null }>`
        select state, wait_event_type || ':' || wait_event as wait from pg_stat_activity where pid = any(${pids}::int[])
      `.execute(db)
      for (const row of rows) {
        const key = row.state === 'active' ? (row.wait ?? 'active, on CPU') : (row.state ?? 'unknown')
        use.samples.set(key, (use.samples.get(key) ?? 0) + 1)
      }
      await sleep(SAMPLE_EVERY_MS)
    }
  })()
  try {
    const result = await round()
    use.requests += result.requests
    pids.forEach((p, i) => {
      const before = cpuBefore[i]
      const after = cpuMs(p)
      if (before !== undefined && after !== undefined) use.cpuMs += after - before
    })
    return result
  } finally {
    sampling = false
    await sampler
  }
}

/** Resolves once no backend of process `pid` has run a statement in three looks 50 ms apart: its last requests are done. */
async function waitForIdleBackends(pid: number | undefined): Promise<void> {
  const pids = await backendsOf(pid)
  for (let quiet = 0, deadline = Date.now() + 30_000; quiet < 3; ) {
    const { rows } = await sql<{ n: string }>`select count(*) as n from pg_stat_activity where pid = any(${pids}::int[]) and state <> 'idle'`.execute(db)
    quiet = Number(rows[0]?.n) === 0 ? quiet + 1 : 0
    if (Date.now() > deadline) throw new Error('the API still runs statements 30 s after the load stopped')
    await guard(sleep(50))
  }
}

/** The backends' use as the results file keeps it: the share of each state, and CPU per request. */
function backendSummary(use: BackendUse): { statesShare: Record<string, number>; cpuUsPerRequest: number | null } {
  const total = [...use.samples.values()].reduce((a, b) => a + b, 0)
  const statesShare = Object.fromEntries(
    [...use.samples].sort((a, b) => b[1] - a[1]).map(([state, n]) => [state, Number((n / total).toFixed(3))]),
  )
  return { statesShare, cpuUsPerRequest: use.requests > 0 && use.cpuMs > 0 ? Math.round((use.cpuMs * 1000) / use.requests) : null }
}

/** The states that took at least 5% of the samples, as a table shows them. */
const statesText = (share: Record<string, number>): string =>
  Object.entries(share)
    .filter(([, v]) => v >= 0.05)
    .map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`)
    .join(', ')

// ---------------------------------------------------------------------------------------
// Requests.

/** The requests of part A: each of `tokens` in turn, the currencies in turn, amounts of 10.00-99.99. */
function placementRequests(tokens: string[]): autocannon.Request[] {
  return Array.from({ length: 40 }, (_, i) => ({
    headers: orderHeaders(tokens[i % tokens.length]!),
    body: JSON.stringify({ currency: CURRENCIES[i % 3], amount: `${10 + ((i * 37) % 90)}.${String((i * 13) % 100).padStart(2, '0')}` }),
  }))
}

/**
 * The requests of part B, one list per connection in turn: small orders (accepted) on one
 * connection in four, orders too large for the headroom (refused) on the three others.
 */
function nearCapRequests(tokens: string[]): Array<autocannon.Request[]> {
  const orders = (amount: (i: number) => string) =>
    Array.from({ length: 40 }, (_, i) => ({
      headers: orderHeaders(tokens[i % tokens.length]!),
      body: JSON.stringify({ currency: CURRENCIES[i % 3], amount: amount(i) }),
    }))
  const refused = orders(() => REFUSED_AMOUNT)
  return [orders((i) => `${1 + (i % 9)}.${String((i * 7) % 100).padStart(2, '0')}`), refused, refused, refused]
}

/** A new order's headers: the token, and an Idempotency-Key that autocannon makes unique per request. */
const orderHeaders = (token: string): Record<string, string> => ({
  'content-type': 'application/json',
  authorization: `Bearer ${token}`,
  'idempotency-key': 'bench-[<id>]',
})

/** GETs `url` with `token`; the answer's JSON, after checking its status. */
async function getJson<T>(url: string, token: string, status = 200): Promise<{ body: T; response: Response }> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) })
  const text = await response.text()
  if (response.status !== status) throw new Error(`GET ${url}: ${response.status} ${text}`)
  return { body: JSON.parse(text) as T, response }
}

interface OrdersPage {
  items: Array<{ id: string; created_at: string; user_id: string }>
  next_cursor: string | null
}

/** Milliseconds from sending a GET to having read its whole answer; throws unless 200. */
async function timedGet(url: string, token: string): Promise<number> {
  const started = performance.now()
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) })
  const text = await response.text()
  const ms = performance.now() - started
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${text}`)
  return ms
}

// ---------------------------------------------------------------------------------------
// The run.

const loadAtStart = loadAverage1m()
const db = createDb<Database>({ url: config.DATABASE_URL, schema, max: 4, log })
const redis = createRedis(redisUrl, log, 'bench')
let quoteTimer: NodeJS.Timeout | undefined

try {
  await prepareNamespace(db, redis, schema)
  const userIds = Array.from({ length: CALLERS }, (_, i) => `user${i + 1}`)
  await createAccounts(
    db,
    userIds.map((id) => ({ id, credit: 0 })),
  )
  const tokens: string[] = []
  for (const userId of userIds) tokens.push((await createApiToken(db, { userId })).token)
  const adminToken = (await createApiToken(db, { admin: true })).token
  const admin = createAdmin(kafka)
  try {
    await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 })
  } finally {
    await admin.close()
  }
  await writeQuote(redis)
  quoteTimer = setInterval(() => writeQuote(redis).catch((err: unknown) => failure.fail(err as Error)), QUOTE_EVERY_MS)

  const api = startApi(processes, serviceEnv, profileFlags)
  const apiUrl = await processes.waitForUrl(api, API_LISTENING)
  const rows: Row[] = [
    [`load average (1 min) at start, ${machineCpus} cores`, loadAtStart.toFixed(1)],
    ['pinning', pinning.description],
  ]
  const result: Record<string, unknown> = {
    benchmark: 'btc',
    date: new Date().toISOString(),
    node: process.version,
    cpus: machineCpus,
    quote: `written into Redis by the bench every ${QUOTE_EVERY_MS} ms, fetched_at now (no poller or providers running)`,
    rateLimitMax: serviceConfig.RATE_LIMIT_MAX,
    authCacheMs: serviceConfig.AUTH_CACHE_MS,
    cap: CAP,
    connections: CONNECTIONS,
    callers: CALLERS,
    rounds: ROUNDS,
    roundSeconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
  }

  if (!SKIP_PLACEMENT) {
    // One order first: the route answers 201 for a seeded user, and the limiter is on.
    const probe = await fetch(`${apiUrl}/api/btc/orders`, {
      method: 'POST',
      headers: { ...orderHeaders(tokens[0]!), 'idempotency-key': 'bench-probe' },
      body: JSON.stringify({ currency: 'EUR', amount: '10.00' }),
      signal: AbortSignal.timeout(10_000),
    })
    const probeBody = await probe.text()
    if (probe.status !== 201) throw new Error(`order probe: ${probe.status} ${probeBody}`)
    assertRateLimitOn(probe, serviceConfig.RATE_LIMIT_MAX)

    const empty = startEmptyServer(processes, profileFlags)
    const emptyUrl = await processes.waitForUrl(empty, EMPTY_LISTENING)
    const load = (url: string, server: Child, seconds: number, connectionRequests: Array<autocannon.Request[]>, allowedStatuses: number[] = []) =>
      loadRound(
        { url: `${url}/api/btc/orders`, server, headers: {}, body: '', connections: CONNECTIONS, seconds, connectionRequests, uniqueIds: true, allowedStatuses },
        failure,
      )
    const ratioLine = (b: LoadRound, a: LoadRound) => `ratio ${(a.requestsPerSecond / b.requestsPerSecond).toFixed(2)}\n`

    // A. Placement, every order accepted.
    process.stdout.write(
      `A. order placement vs empty Fastify: ${CONNECTIONS} connections, ${CALLERS} users, ${ROUNDS} rounds of ${SECONDS} s ` +
        `after ${WARMUP_SECONDS} s warm-up each\n`,
    )
    const placing = [placementRequests(tokens)]
    let accepted = 1
    // The backends are observed in the measured rounds, not the warm-up (the first subject round).
    let measuring = false
    const aBackends: BackendUse = { samples: new Map(), cpuMs: 0, requests: 0 }
    const a = await alternateRounds(
      (seconds) => load(emptyUrl, empty, seconds, placing),
      async (seconds) => {
        const round = await (measuring ? observeBackends(api.process.pid, aBackends, () => load(apiUrl, api, seconds, placing)) : load(apiUrl, api, seconds, placing))
        measuring = true
        accepted += round.requests
        return round
      },
      { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS },
      (round, b, s) =>
        process.stdout.write(
          `round ${round}: empty ${b.requestsPerSecond.toFixed(0)} req/s ${roundDetails(b)}, ` +
            `orders ${s.requestsPerSecond.toFixed(0)} req/s ${roundDetails(s)}, ${ratioLine(b, s)}`,
        ),
    )
    const afterA = await assertTotals(db, 'after part A')
    // autocannon drops the answers still in flight when a round ends: up to one per connection and round were stored unseen.
    if (afterA.orders < accepted || afterA.orders > accepted + (ROUNDS + 1 + a.validity.repeated) * CONNECTIONS) {
      throw new Error(`after part A: ${afterA.orders} orders stored, ${accepted} answered 201`)
    }
    const aBaseline = summarize(a.baselineRounds)
    const aOrders = summarize(a.subjectRounds)
    const aCompared = compareSummaries(aBaseline, aOrders)
    const aBackendUse = backendSummary(aBackends)
    rows.push(
      settingsRow(CONNECTIONS, ROUNDS, SECONDS),
      ...baselineRows(aBaseline),
      ['A. orders placed, median (req/s)', String(aOrders.requestsPerSecond)],
      ['A. orders p50 / p99, median (ms)', `${aOrders.p50Ms} / ${aOrders.p99Ms}`],
      [`A. orders / empty req/s (target >= ${PLACEMENT_TARGET})`, aCompared.ratio.toFixed(2)],
      ['A. each round', roundRatios(a.subjectRounds, a.baselineRounds).join(' ')],
      validityRow(a.validity),
      ...cpuRows('orders', aBaseline, aOrders, aCompared.cpuRatio),
      ['A. PostgreSQL backends of the API: CPU per order (µs)', String(aBackendUse.cpuUsPerRequest ?? '?')],
      ['A. ... their states (share of samples)', statesText(aBackendUse.statesShare)],
      ['A. orders stored (answered 201 + unseen at round ends), their sum', `${afterA.orders} (${accepted}), ${afterA.total} BTC`],
    )
    result.placement = {
      baselineRounds: a.baselineRounds.map(roundedRound),
      orderRounds: a.subjectRounds.map(roundedRound),
      roundRatios: roundRatios(a.subjectRounds, a.baselineRounds),
      validity: a.validity,
      baseline: aBaseline,
      orders: aOrders,
      ratio: Number(aCompared.ratio.toFixed(3)),
      ratioTarget: PLACEMENT_TARGET,
      cpuRatio: aCompared.cpuRatio === null ? null : Number(aCompared.cpuRatio.toFixed(3)),
      ordersStored: afterA.orders,
      postgresBackends: aBackendUse,
    }

    // B. Near the cap: a quarter accepted, three quarters refused, the total reset before each round.
    process.stdout.write(
      `\nB. near the cap (${HEADROOM_BTC} BTC left before each round; 1 connection in 4 sends small orders, 3 too large): the same rounds\n`,
    )
    const nearCap = nearCapRequests(tokens)
    measuring = false
    const bBackends: BackendUse = { samples: new Map(), cpuMs: 0, requests: 0 }
    await fillToHeadroom(db)
    const refusal = await fetch(`${apiUrl}/api/btc/orders`, {
      method: 'POST',
      headers: { ...orderHeaders(tokens[0]!), 'idempotency-key': 'bench-refusal-probe' },
      body: JSON.stringify({ currency: 'EUR', amount: REFUSED_AMOUNT }),
      signal: AbortSignal.timeout(10_000),
    })
    const refusalBody = await refusal.text()
    if (refusal.status !== 409 || !refusalBody.includes('btc_cap_exceeded')) throw new Error(`refusal probe: ${refusal.status} ${refusalBody}`)
    const b = await alternateRounds(
      (seconds) => load(emptyUrl, empty, seconds, nearCap),
      async (seconds) => {
        await fillToHeadroom(db)
        const round = await (measuring
          ? observeBackends(api.process.pid, bBackends, () => load(apiUrl, api, seconds, nearCap, [409]))
          : load(apiUrl, api, seconds, nearCap, [409]))
        measuring = true
        const totals = await assertTotals(db, 'after a round near the cap')
        // The filler order is the one more.
        const accepted201 = round.statuses?.counts['201'] ?? 0
        if (accepted201 === 0) throw new Error('no order accepted near the cap')
        if (totals.orders - 1 < accepted201 || totals.orders - 1 > accepted201 + CONNECTIONS) {
          throw new Error(`a round near the cap stored ${totals.orders - 1} orders, answered ${accepted201} with 201`)
        }
        return round
      },
      { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS },
      (round, base, s) =>
        process.stdout.write(
          `round ${round}: empty ${base.requestsPerSecond.toFixed(0)} req/s ${roundDetails(base)}, near the cap ` +
            `${s.requestsPerSecond.toFixed(0)} req/s (201: ${statusRate(s, 201)}/s, 409: ${statusRate(s, 409)}/s) ` +
            `${roundDetails(s)}, ${ratioLine(base, s)}`,
        ),
    )
    await stopChild(empty)
    const bBaseline = summarize(b.baselineRounds)
    const bOrders = summarize(b.subjectRounds)
    const bCompared = compareSummaries(bBaseline, bOrders)
    const bBackendUse = backendSummary(bBackends)
    const acceptedPerSecond = median(b.subjectRounds.map((r) => statusRate(r, 201)))
    const refusedPerSecond = median(b.subjectRounds.map((r) => statusRate(r, 409)))
    rows.push(
      ...baselineRows(bBaseline),
      ['B. near the cap, all answers, median (req/s)', String(bOrders.requestsPerSecond)],
      ['B. accepted (201) / refused (409), median (req/s)', `${acceptedPerSecond} / ${refusedPerSecond}`],
      ['B. near the cap p50 / p99, median (ms)', `${bOrders.p50Ms} / ${bOrders.p99Ms}`],
      ['B. near the cap / empty req/s', bCompared.ratio.toFixed(2)],
      ['B. each round', roundRatios(b.subjectRounds, b.baselineRounds).join(' ')],
      validityRow(b.validity),
      ...cpuRows('near the cap', bBaseline, bOrders, bCompared.cpuRatio),
      ['B. PostgreSQL backends of the API: CPU per answer (µs)', String(bBackendUse.cpuUsPerRequest ?? '?')],
      ['B. ... their states (share of samples)', statesText(bBackendUse.statesShare)],
    )
    result.nearCap = {
      headroomBtc: HEADROOM_BTC,
      refusedAmount: REFUSED_AMOUNT,
      share: '1 connection in 4 sends small orders (accepted), 3 too large ones (refused)',
      baselineRounds: b.baselineRounds.map(roundedRound),
      nearCapRounds: b.subjectRounds.map(roundedRound),
      roundRatios: roundRatios(b.subjectRounds, b.baselineRounds),
      validity: b.validity,
      baseline: bBaseline,
      nearCap: bOrders,
      acceptedPerSecond,
      refusedPerSecond,
      ratio: Number(bCompared.ratio.toFixed(3)),
      cpuRatio: bCompared.cpuRatio === null ? null : Number(bCompared.cpuRatio.toFixed(3)),
      postgresBackends: bBackendUse,
    }
  }

  if (ORDERS > 0) {
    // C. Paging.
    process.stdout.write(`\nC. paging over ${ORDERS} orders of ${PAGE_USER}: page 1 vs page ${DEEP_PAGE} of ${PAGE_LIMIT}\n`)
    // The orders in flight when part B's load stopped must land before the table is replaced.
    await waitForIdleBackends(api.process.pid)
    const insertStarted = performance.now()
    await insertPagingOrders(db, PAGE_USER, ORDERS)
    const insertSeconds = round1((performance.now() - insertStarted) / 1000)
    const totals = await assertTotals(db, 'after inserting the orders to page')
    if (totals.orders !== ORDERS) throw new Error(`${totals.orders} orders inserted, not ${ORDERS}`)
    process.stdout.write(`${ORDERS} orders inserted and analysed in ${insertSeconds} s\n`)
    rows.push(
      ['C. orders (all of one user), inserted in (s)', `${ORDERS}, ${insertSeconds}`],
      ['C. page length, deep page', `${PAGE_LIMIT}, ${DEEP_PAGE} (orders ${(DEEP_PAGE - 1) * PAGE_LIMIT + 1}-${DEEP_PAGE * PAGE_LIMIT})`],
    )
    const lists = [
      { name: 'user', owner: PAGE_USER as string | undefined, token: tokens[0]! },
      { name: 'admin', owner: undefined, token: adminToken },
    ]
    const paging: Record<string, unknown> = {}
    for (const list of lists) {
      const url = (cursor?: string) => `${apiUrl}/api/btc/orders?limit=${PAGE_LIMIT}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const deep = await cursorAfter(db, list.owner, (DEEP_PAGE - 1) * PAGE_LIMIT)
      // The computed cursor is the API's own: the page before, read with its computed cursor, gives it.
      const before = DEEP_PAGE === 2 ? undefined : (await cursorAfter(db, list.owner, (DEEP_PAGE - 2) * PAGE_LIMIT)).cursor
      const previous = (await getJson<OrdersPage>(url(before), list.token)).body
      if (previous.next_cursor !== deep.cursor) {
        throw new Error(`${list.name} list: page ${DEEP_PAGE - 1} gives the cursor ${previous.next_cursor}, not ${deep.cursor}`)
      }
      const first = (await getJson<OrdersPage>(url(), list.token)).body
      const deepPage = (await getJson<OrdersPage>(url(deep.cursor), list.token)).body
      if (first.items.length !== PAGE_LIMIT || deepPage.items.length !== PAGE_LIMIT) {
        throw new Error(`${list.name} list: pages of ${first.items.length} and ${deepPage.items.length} orders, not ${PAGE_LIMIT}`)
      }
      if (deepPage.items[0]!.created_at > deep.key.created_at) throw new Error(`${list.name} list: the deep page starts after its cursor`)

      const plans = {
        first: await checkPlan(db, pageQuery(db, list.owner, undefined)),
        deep: await checkPlan(db, pageQuery(db, list.owner, deep.key)),
      }
      for (let i = 0; i < PAGE_WARMUP; i++) {
        await guard(timedGet(url(), list.token))
        await guard(timedGet(url(deep.cursor), list.token))
      }
      const firstMs: number[] = []
      const deepMs: number[] = []
      const perRound: Array<{ firstP50Ms: number; deepP50Ms: number; ratio: number }> = []
      for (let round = 1; round <= ROUNDS; round++) {
        const f: number[] = []
        const d: number[] = []
        for (let i = 0; i < PAGE_SAMPLES; i++) {
          // Alternating, and which goes first alternating too, so neither always follows the other.
          if (i % 2 === 0) {
            f.push(await guard(timedGet(url(), list.token)))
            d.push(await guard(timedGet(url(deep.cursor), list.token)))
          } else {
            d.push(await guard(timedGet(url(deep.cursor), list.token)))
            f.push(await guard(timedGet(url(), list.token)))
          }
        }
        firstMs.push(...f)
        deepMs.push(...d)
        const r = { firstP50Ms: round2(median(f)), deepP50Ms: round2(median(d)), ratio: Number((median(d) / median(f)).toFixed(3)) }
        perRound.push(r)
        process.stdout.write(`${list.name} list, round ${round}: page 1 p50 ${r.firstP50Ms} ms, page ${DEEP_PAGE} p50 ${r.deepP50Ms} ms, ratio ${r.ratio.toFixed(2)}\n`)
      }
      const sortedFirst = [...firstMs].sort((x, y) => x - y)
      const sortedDeep = [...deepMs].sort((x, y) => x - y)
      const summary = {
        firstPage: { p50Ms: round2(percentile(sortedFirst, 0.5)), p90Ms: round2(percentile(sortedFirst, 0.9)), p99Ms: round2(percentile(sortedFirst, 0.99)) },
        deepPage: { p50Ms: round2(percentile(sortedDeep, 0.5)), p90Ms: round2(percentile(sortedDeep, 0.9)), p99Ms: round2(percentile(sortedDeep, 0.99)) },
        ratio: Number((median(perRound.map((r) => r.deepP50Ms)) / median(perRound.map((r) => r.firstP50Ms))).toFixed(3)),
        ratioTarget: PAGING_TARGET,
        perRound,
        samplesPerPage: firstMs.length,
        plans,
      }
      paging[list.name] = summary
      rows.push(
        [`C. ${list.name} list: page 1 / page ${DEEP_PAGE} p50, median of rounds (ms)`, `${median(perRound.map((r) => r.firstP50Ms))} / ${median(perRound.map((r) => r.deepP50Ms))}`],
        [`C. ${list.name} list: page 1 / page ${DEEP_PAGE} p90 (ms)`, `${summary.firstPage.p90Ms} / ${summary.deepPage.p90Ms}`],
        [`C. ${list.name} list: page ${DEEP_PAGE} / page 1 (target <= ${PAGING_TARGET})`, summary.ratio.toFixed(2)],
        [`C. ${list.name} list: each round`, perRound.map((r) => r.ratio.toFixed(2)).join(' ')],
        [`C. ${list.name} list: SQL time page 1 / deep (ms), plan`, `${plans.first.executionMs} / ${plans.deep.executionMs}, ${plans.deep.nodes.map((n) => n.replace(/ \(.*$/, '')).join(' > ')}`],
      )
    }
    result.paging = { orders: ORDERS, owner: `all ${PAGE_USER}'s`, pageLimit: PAGE_LIMIT, deepPage: DEEP_PAGE, insertSeconds, ...paging }
  }

  Object.assign(result, runConditions(pinning, loadAtStart))
  printTable(rows)
  await writeResult('btc', result)
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  clearInterval(quoteTimer)
  await runCleanup([
    ['processes', () => processes.stopAll()],
    ...namespaceCleanup({ db, schema, kafka, topic, groups: [], redis }),
  ])
}

/** A round as the results file keeps it: req/s whole. */
function roundedRound(r: LoadRound): LoadRound {
  return { ...r, requestsPerSecond: Math.round(r.requestsPerSecond) }
}

/** The round's answers of `status` per second, whole. */
function statusRate(round: LoadRound, status: number): number {
  return round.statuses ? Math.round((round.statuses.counts[status] ?? 0) / round.statuses.seconds) : 0
}

/** Rounded to two decimals. */
function round2(n: number): number {
  return Math.round(n * 100) / 100
}
