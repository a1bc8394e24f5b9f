/**
 * What the benchmarks share (`bench/api.bench.ts`, `bench/events.bench.ts`,
 * `bench/alerts.bench.ts`, `bench/btc.bench.ts`, `bench/market.bench.ts`): the run's namespaces and the services' environment, the
 * failure that ends a run, the service processes, the autocannon rounds against the empty
 * Fastify baseline and their statistics, the printed table, the results file, and the
 * cleanup. Everything a function needs is passed in.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { availableParallelism, loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { sql } from 'kysely'
import { closeDb, migrateToLatest } from '../src/platform/db/index.ts'
import { type Db, migrations } from '../src/database.ts'
import { createAdmin, type KafkaSettings } from '../src/platform/kafka/clients.ts'
import { closeRedis, type Redis } from '../src/platform/redis.ts'

/** The repository's root, where the service processes run. */
export const repoRoot = fileURLToPath(new URL('../', import.meta.url))

// ---------------------------------------------------------------------------------------
// Namespaces and the services' environment.

/** A rate limit too high to trigger: the limiter stays on (a Redis counter per request) but never refuses. */
export const NEVER_REFUSED_LIMIT = '100000000'

/** A random suffix naming this run's schema, topic and consumer groups. */
export const runSuffix = (): string => randomBytes(5).toString('hex')

/** `redisUrl` pointing at database `db` instead of its own. */
export const redisDbUrl = (redisUrl: string, db: number): string => `${redisUrl.replace(/\/\d*$/, '')}/${db}`

/** The environment of every service process: `base`, this run's namespaces, quiet logs, a limit never reached, then `extra`. */
export function serviceEnvFor(
  base: NodeJS.ProcessEnv,
  namespace: { schema: string; redisUrl: string },
  extra: Record<string, string>,
): NodeJS.ProcessEnv {
  return {
    ...base,
    DATABASE_SCHEMA: namespace.schema,
    REDIS_URL: namespace.redisUrl,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_MAX: NEVER_REFUSED_LIMIT,
    ...extra,
  }
}

/** The whole number in env variable `name`, `fallback` when unset; throws naming the variable when it is not one of at least `min`. */
export function intEnv(name: string, fallback: number, min: number): number {
  const text = process.env[name]
  if (text === undefined || text.trim() === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be a whole number >= ${min} (got ${JSON.stringify(text)})`)
  return value
}

/** Empties the run's Redis database and creates its schema, migrated. */
export async function prepareNamespace(db: Db, redis: Redis, schema: string): Promise<void> {
  await redis.flushdb()
  await migrateToLatest(db, schema, migrations)
}

/** Node flags that make a process write a V8 CPU profile into `dir` when it stops; none without `dir`. */
export const cpuProfileFlags = (dir: string | undefined): string[] => (dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : [])

// ---------------------------------------------------------------------------------------
// Pinning: the load generator and the servers under test on cores of their own.

/**
 * The CPUs this process may use when the benchmark starts, before {@link pinCores} pins it
 * to one (availableParallelism() answers for the pinned process after).
 */
export const machineCpus = availableParallelism()

/** Where the run's processes may run. */
export interface Pinning {
  /** The CPUs of the load generator (this process, all its threads), as taskset lists them; null when not pinned. */
  load: string | null
  /** The CPUs of every service process the run starts; null when not pinned. */
  servers: string | null
  /** What was done and what was not, for the printed table and the result file. */
  description: string
}

/**
 * Pins this process (the load generator: autocannon runs in it) to CPU 0 and returns the
 * CPUs for the services it starts (1 to n-1), with taskset, unless BENCH_PIN is 0, the
 * machine has one CPU, or taskset is missing: then nothing is pinned and the description
 * says why. PostgreSQL, Redis and Kafka are the machine's: they stay unpinned.
 */
export function pinCores(env: NodeJS.ProcessEnv = process.env): Pinning {
  const cpus = machineCpus
  const none = (why: string): Pinning => ({ load: null, servers: null, description: `none: ${why}` })
  if (env.BENCH_PIN === '0') return none('BENCH_PIN=0')
  if (cpus < 2) return none('one CPU')
  const servers = cpus === 2 ? '1' : `1-${cpus - 1}`
  try {
    execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
  } catch (err) {
    return none(`taskset failed (${(err as Error).message.split('\n')[0]})`)
  }
  return {
    load: '0',
    servers,
    description: `taskset: load generator on CPU 0, services under test on CPU ${servers}; PostgreSQL, Redis and Kafka unpinned`,
  }
}

// ---------------------------------------------------------------------------------------
// Failure: any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).

export interface Failure {
  /** The error that ended the run, if one did. */
  failed: Error | undefined
  /** Stops the load round in progress; set while one runs. */
  stopLoad: (() => void) | undefined
  /** Ends the run with `err` (the first one wins) and stops any load in progress. */
  fail(err: Error): void
  /** `promise`, unless the run fails first. */
  guard<T>(promise: Promise<T>): Promise<T>
}

/** The run's failure, also on Ctrl-C. */
export function createFailure(): Failure {
  const failure = Promise.withResolvers<never>()
  failure.promise.catch(() => {})
  const state: Failure = {
    failed: undefined,
    stopLoad: undefined,
    fail(err) {
      if (state.failed) return
      state.failed = err
      state.stopLoad?.()
      failure.reject(err)
    },
    guard: (promise) => Promise.race([promise, failure.promise]),
  }
  process.once('SIGINT', () => state.fail(new Error('interrupted')))
  return state
}

// ---------------------------------------------------------------------------------------
// Child processes.

export interface Child {
  name: string
  process: ChildProcess
  exited: Promise<unknown>
  stopping: boolean
  /** The last lines it printed, for a failure report. */
  tail: string[]
  stdout: string
}

/** What `bourse api` prints once it listens; the URL is the first group. */
export const API_LISTENING = /api listening on (http:\/\/\S+)/
/** What `bench/empty-server.ts` prints once it listens; the URL is the first group. */
export const EMPTY_LISTENING = /listening on (http:\/\/\S+)/

export interface Processes {
  /** Starts `node [nodeFlags] args` in the repository; its exiting unasked fails the run. */
  start(name: string, args: string[], env: NodeJS.ProcessEnv, nodeFlags?: string[]): Child
  /** Resolves with the first group of the first match of `pattern` in the child's stdout. */
  waitForUrl(child: Child, pattern: RegExp, timeoutMs?: number): Promise<string>
  /** Stops every process started. */
  stopAll(): Promise<unknown>
}

/**
 * The run's child processes, reporting to `failure`, on the pinning's server CPUs (taskset
 * execs node: the child's pid is node's).
 */
export function createProcesses(failure: Pick<Failure, 'fail' | 'guard'>, pinning?: Pinning): Processes {
  const children: Child[] = []
  return {
    start(name, args, env, nodeFlags = []) {
      const command = [process.execPath, ...nodeFlags, ...args]
      const pinned = pinning?.servers ? ['taskset', '-c', pinning.servers, ...command] : command
      const proc = spawn(pinned[0]!, pinned.slice(1), { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
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
        if (!child.stopping) failure.fail(new Error(`${name} exited (${code ?? signal}) during the run:\n${child.tail.join('\n')}`))
      })
      children.push(child)
      return child
    },
    async waitForUrl(child, pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const match = pattern.exec(child.stdout)
        if (match) return match[1]!
        if (Date.now() > deadline) throw new Error(`${child.name} printed nothing matching ${pattern} in ${timeoutMs} ms`)
        await failure.guard(sleep(20))
      }
    },
    stopAll: () => Promise.all(children.map(stopChild)),
  }
}

/** Starts `bourse api` on a free port. */
export const startApi = (processes: Processes, env: NodeJS.ProcessEnv, nodeFlags: string[] = []): Child =>
  processes.start('bourse api', ['src/cli.ts', 'api', '--port', '0'], env, nodeFlags)

/** Starts the empty Fastify baseline, `bench/empty-server.ts`, on a free port. */
export const startEmptyServer = (processes: Processes, nodeFlags: string[] = []): Child =>
  processes.start('empty server', ['bench/empty-server.ts'], process.env, nodeFlags)

/**
 * SIGTERM, then SIGKILL after 60 s: a service stops within its own 15 s shutdown timeout,
 * but one started with BENCH_CPU_PROF writes its profile after that, which took the API
 * longer than 15 s after a run (the profile was lost to the SIGKILL).
 */
export async function stopChild(child: Child): Promise<void> {
  child.stopping = true
  if (child.process.exitCode !== null || child.process.signalCode !== null) return
  child.process.kill('SIGTERM')
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 60_000)
  await child.exited
  clearTimeout(timer)
}

/** Throws unless the response says the rate limit is on with `expected` as its limit. */
export function assertRateLimitOn(response: Response, expected: number): void {
  const limit = response.headers.get('x-ratelimit-limit')
  if (limit !== expected.toString()) throw new Error(`rate limit not on (x-ratelimit-limit: ${limit})`)
}

// ---------------------------------------------------------------------------------------
// Statistics.

/** The middle value (the upper one of an even count). */
export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
/** Nearest-rank percentile of ascending `sorted`. */
export const percentile = (sorted: number[], q: number): number => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!
/** Rounded to one decimal. */
export const round1 = (n: number): number => Math.round(n * 10) / 10

/** Clock ticks per second of /proc times. */
const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU time (user + system, ms) a process has used, from /proc; undefined where there is none. */
export function cpuMs(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // After "pid (name) ", utime and stime are the 12th and 13th fields.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks
  } catch {
    return undefined
  }
}

/** The local ports of the TCP connections process `pid` holds to `remotePort` (Linux /proc; none elsewhere). */
export function connectionPorts(pid: number | undefined, remotePort: number): number[] {
  const inodes = new Set<string>()
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const socket = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        if (socket) inodes.add(socket[1]!)
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return []
  }
  const ports: number[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    // Columns: sl, local address:port, remote address:port (hex), ..., the socket's inode (10th).
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || !inodes.has(fields[9]!)) continue
      if (Number.parseInt(fields[2]!.split(':')[1]!, 16) === remotePort) ports.push(Number.parseInt(fields[1]!.split(':')[1]!, 16))
    }
  }
  return ports
}

/** The machine's 1-minute load average: how much other work moved the numbers. */
export const loadAverage1m = (): number => loadavg()[0]!

// ---------------------------------------------------------------------------------------
// Load rounds against the empty route.

export interface LoadRound {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** CPU time of the server process per answered request (µs); null without /proc. */
  serverCpuUsPerRequest: number | null
  /** The answers by HTTP status and the round's length; only when the target allows statuses besides 2xx. */
  statuses?: { seconds: number; counts: Record<string, number> }
}

export interface LoadTarget {
  url: string
  /** The process serving `url`, whose CPU time is measured. */
  server: Child
  headers: Record<string, string>
  body: string
  connections: number
  seconds: number
  /**
   * Each connection's own headers and body, given to the connections in turn (connection i
   * gets entry i modulo their number): distinct callers. @defaultValue every connection sends `headers` and `body`
   */
  callers?: ReadonlyArray<{ headers: Record<string, string>; body: string }>
  /** @defaultValue 'POST' */
  method?: 'GET' | 'POST'
  /**
   * Requests every connection sends in turn, each overriding `headers` and `body` (and the
   * URL's path with its own `path`). @defaultValue every request is `headers` and `body`
   */
  requests?: autocannon.Request[]
  /**
   * Each connection's own `requests`, given to the connections in turn (connection i gets
   * entry i modulo their number). @defaultValue every connection sends `requests`
   */
  connectionRequests?: ReadonlyArray<autocannon.Request[]>
  /** Replaces `[<id>]` anywhere in a request with a new id for each request sent. @defaultValue false */
  uniqueIds?: boolean
  /** Statuses besides 2xx that count as answers (such as 409 for an order refused at the cap). @defaultValue none */
  allowedStatuses?: readonly number[]
}

/** How many answers of `result` had one of the `allowed` statuses. */
const allowedAnswers = (result: Pick<autocannon.Result, 'statusCodeStats'>, allowed: readonly number[]): number =>
  allowed.reduce((sum, status) => sum + (result.statusCodeStats?.[`${status}`]?.count ?? 0), 0)

/** One autocannon round of POSTs to the target; throws unless every answer was 2xx. */
export async function loadRound(target: LoadTarget, failure: Failure): Promise<LoadRound> {
  const { url, server, headers, body, connections, seconds, callers, method = 'POST', uniqueIds = false, allowedStatuses = [] } = target
  const { connectionRequests } = target
  const requests = target.requests ?? connectionRequests?.[0]
  let nextCaller = 0
  const setupClient = callers?.length
    ? (client: autocannon.Client) => {
        const caller = callers[nextCaller++ % callers.length]!
        client.setHeadersAndBody(caller.headers, caller.body)
      }
    : connectionRequests?.length
      ? (client: autocannon.Client) => client.setRequests(connectionRequests[nextCaller++ % connectionRequests.length]!)
      : undefined
  const cpuBefore = cpuMs(server.process.pid)
  const result = await failure.guard(
    new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(
        {
          url,
          method,
          headers,
          ...(method === 'POST' && { body }),
          connections,
          pipelining: 1,
          duration: seconds,
          idReplacement: uniqueIds,
          ...(requests && { requests }),
          ...(setupClient && { setupClient }),
        },
        (err: unknown, res) => (err ? reject(err as Error) : resolve(res)),
      )
      failure.stopLoad = () => instance.stop()
    }),
  )
  failure.stopLoad = undefined
  const cpuAfter = cpuMs(server.process.pid)
  const allowed = allowedAnswers(result, allowedStatuses)
  const answered = result['2xx'] + allowed
  const bad = result.non2xx - allowed + result.errors + result.timeouts
  if (bad > 0 || answered === 0) {
    const statuses = JSON.stringify(Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])))
    throw new Error(
      `${url}: ${result['2xx']} answers 2xx, ${result.non2xx} not (by status ${statuses}), ` +
        `${result.errors} errors, ${result.timeouts} timeouts`,
    )
  }
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: answered,
    serverCpuUsPerRequest:
      cpuBefore === undefined || cpuAfter === undefined ? null : Math.round(((cpuAfter - cpuBefore) * 1000) / answered),
    ...(allowedStatuses.length > 0 && {
      statuses: {
        seconds: result.duration,
        counts: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([status, stats]) => [status, stats.count ?? 0])),
      },
    }),
  }
}

export interface Alternation<T> {
  /** The warm-up rounds, not compared. */
  warmup: { baseline: T; subject: T }
  baselineRounds: T[]
  subjectRounds: T[]
  /** The pairs run again (see {@link alternateRounds}): not compared, but their requests were answered. */
  discarded: Array<{ baseline: T; subject: T }>
  /** Whether the baseline held still enough for the comparison to count. */
  validity: Validity
}

/** How steady the baseline was: the run counts only if its spread is within the bound. */
export interface Validity {
  /** (max - min) / median of the baseline's req/s over the rounds kept. */
  spread: number
  /** The largest spread a valid run may have (BENCH_MAX_SPREAD, in percent). */
  bound: number
  /** Pairs of rounds run again because the baseline's spread went past the bound. */
  repeated: number
  valid: boolean
}

/** The baseline spread a run may have: BENCH_MAX_SPREAD percent, 10 unless set. */
export const maxBaselineSpread = (): number => intEnv('BENCH_MAX_SPREAD', 10, 1) / 100

/** (max - min) / median of the rounds' req/s; 0 for fewer than two rounds. */
export function spreadOf(rounds: ReadonlyArray<Pick<LoadRound, 'requestsPerSecond'>>): number {
  if (rounds.length < 2) return 0
  const values = rounds.map((r) => r.requestsPerSecond)
  return (Math.max(...values) - Math.min(...values)) / median(values)
}

/** The validity as the printed table shows it, its label after `prefix` (which comparison). */
export const validityRow = (v: Validity, prefix = ''): Row => [
  `${prefix}baseline spread over rounds (valid within ${Math.round(v.bound * 100)}%)`,
  `${(v.spread * 100).toFixed(1)}%${v.repeated > 0 ? `, ${v.repeated} round(s) repeated` : ''}: ${v.valid ? 'valid' : 'NOT VALID, the machine was not steady'}`,
]

/**
 * Warms up the baseline then the subject, then runs `rounds` pairs of rounds, baseline
 * first, each pair passed to `onRound`. The subject's warm-up lasts `subjectWarmupSeconds`
 * (default `warmupSeconds`): longer when it drives a server that must warm up too.
 *
 * When a pair takes the baseline's spread (see {@link spreadOf}) past `maxSpread`, the pair
 * whose baseline is farthest from the median is set aside, said so, and one more pair run,
 * at most `maxRepeats` times in the run: the comparison stands on a baseline that held
 * still, or the result says it did not.
 */
export async function alternateRounds<T extends LoadRound>(
  baseline: (seconds: number) => Promise<T>,
  subject: (seconds: number) => Promise<T>,
  options: { rounds: number; seconds: number; warmupSeconds: number; subjectWarmupSeconds?: number; maxSpread?: number; maxRepeats?: number },
  onRound: (round: number, baseline: T, subject: T) => void,
): Promise<Alternation<T>> {
  const bound = options.maxSpread ?? maxBaselineSpread()
  const maxRepeats = options.maxRepeats ?? options.rounds
  const warmup = {
    baseline: await baseline(options.warmupSeconds),
    subject: await subject(options.subjectWarmupSeconds ?? options.warmupSeconds),
  }
  const baselineRounds: T[] = []
  const subjectRounds: T[] = []
  const discarded: Array<{ baseline: T; subject: T }> = []
  while (baselineRounds.length < options.rounds) {
    const round = baselineRounds.length + 1
    const b = await baseline(options.seconds)
    const s = await subject(options.seconds)
    baselineRounds.push(b)
    subjectRounds.push(s)
    const spread = spreadOf(baselineRounds)
    if (spread > bound && discarded.length < maxRepeats) {
      // The pair whose baseline is farthest from the others' median goes (the first round's
      // as well as this one's): one more pair is run in its place.
      const middle = median(baselineRounds.map((r) => r.requestsPerSecond))
      const far = baselineRounds.reduce((best, r, i) =>
        Math.abs(r.requestsPerSecond - middle) > Math.abs(baselineRounds[best]!.requestsPerSecond - middle) ? i : best, 0)
      discarded.push({ baseline: baselineRounds.splice(far, 1)[0]!, subject: subjectRounds.splice(far, 1)[0]! })
      process.stdout.write(
        `round ${round}: the baseline's spread reached ${(spread * 100).toFixed(1)}% (bound ${Math.round(bound * 100)}%): ` +
          `the pair with the empty route at ${discarded.at(-1)!.baseline.requestsPerSecond.toFixed(0)} req/s is run again\n`,
      )
      continue
    }
    onRound(round, b, s)
  }
  const spread = spreadOf(baselineRounds)
  return { warmup, baselineRounds, subjectRounds, discarded, validity: { spread, bound, repeated: discarded.length, valid: spread <= bound } }
}

/** The conditions a result was measured under: the pinning and the machine's load. */
export const runConditions = (pinning: Pinning, loadAtStart: number): Record<string, unknown> => ({
  pinning: pinning.description,
  cpus: machineCpus,
  loadAverage1m: { atStart: round1(loadAtStart), atEnd: round1(loadAverage1m()) },
})

/** A round's latencies and server CPU, as a progress line shows them. */
export const roundDetails = (r: LoadRound): string =>
  `(p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.serverCpuUsPerRequest ?? '?'} µs CPU/req)`

export interface Summary {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  serverCpuUsPerRequest: number | null
}

/** The medians of the rounds (req/s whole; CPU null if any round lacks it). */
export function summarize(rounds: LoadRound[]): Summary {
  return {
    requestsPerSecond: Math.round(median(rounds.map((r) => r.requestsPerSecond))),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    serverCpuUsPerRequest: rounds.some((r) => r.serverCpuUsPerRequest === null)
      ? null
      : median(rounds.map((r) => r.serverCpuUsPerRequest!)),
  }
}

/**
 * The subject's req/s over the baseline's, and the baseline's CPU per request over the
 * subject's: what the ratio would be if each server had a core of its own (null without it).
 */
export function compareSummaries(baseline: Summary, subject: Summary): { ratio: number; cpuRatio: number | null } {
  const ratio = subject.requestsPerSecond / baseline.requestsPerSecond
  const cpuRatio =
    baseline.serverCpuUsPerRequest && subject.serverCpuUsPerRequest
      ? baseline.serverCpuUsPerRequest / subject.serverCpuUsPerRequest
      : null
  return { ratio, cpuRatio }
}

/** Each round's subject req/s over its baseline's, to three decimals. */
export const roundRatios = (subjectRounds: LoadRound[], baselineRounds: LoadRound[]): number[] =>
  subjectRounds.map((r, i) => Number((r.requestsPerSecond / baselineRounds[i]!.requestsPerSecond).toFixed(3)))

// ---------------------------------------------------------------------------------------
// Output.

/** A line of the printed table: what, and its value. */
export type Row = [string, string]

/** The table row of the round settings. */
export const settingsRow = (connections: number, rounds: number, seconds: number): Row => [
  'connections / rounds / seconds per round',
  `${connections} / ${rounds} / ${seconds}`,
]

/** The table rows of the empty Fastify baseline. */
export const baselineRows = (baseline: Summary): Row[] => [
  ['empty Fastify, baseline, median (req/s)', String(baseline.requestsPerSecond)],
  ['empty Fastify p50 / p99, median (ms)', `${baseline.p50Ms} / ${baseline.p99Ms}`],
]

/** The table rows comparing the CPU per request of the baseline and of the subject, called `name`. */
export const cpuRows = (name: string, baseline: Summary, subject: Summary, cpuRatio: number | null): Row[] => [
  [
    `server CPU per request, empty / ${name} (µs)`,
    `${baseline.serverCpuUsPerRequest ?? '?'} / ${subject.serverCpuUsPerRequest ?? '?'}`,
  ],
  [`empty / ${name} CPU per request (ratio on a core each)`, cpuRatio?.toFixed(2) ?? '?'],
]

/** Prints the rows as two aligned columns, after a blank line. */
export function printTable(rows: Row[]): void {
  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`)
}

/** Writes `result` to bench/results/<name>.json and says so. */
export async function writeResult(name: string, result: object): Promise<void> {
  await writeFile(new URL(`./results/${name}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`\nwritten to bench/results/${name}.json\n`)
}

// ---------------------------------------------------------------------------------------
// Cleanup.

/** One cleanup step: what it cleans, and how. */
export type CleanupStep = [string, () => Promise<unknown>]

/** Drops the run's schema and closes the database connections. */
export const schemaCleanup = (db: Db, schema: string): CleanupStep[] => [
  ['schema', () => sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db)],
  ['postgres', () => closeDb(db)],
]

/** Empties the run's Redis database and closes the connection. */
export const redisCleanup = (redis: Redis): CleanupStep[] => [
  ['redis', () => redis.flushdb()],
  ['redis connection', () => closeRedis(redis)],
]

/** Removes the run's namespaces (schema, topic and its dead-letter topics, `groups`, Redis database) and closes the connections. */
export function namespaceCleanup(ns: {
  db: Db
  schema: string
  kafka: KafkaSettings
  topic: string
  groups: string[]
  redis: Redis
}): CleanupStep[] {
  return [
    ...schemaCleanup(ns.db, ns.schema),
    [
      'kafka',
      async () => {
        const admin = createAdmin(ns.kafka)
        try {
          const mine = (await admin.listTopics()).filter((t) => t === ns.topic || t.startsWith(`${ns.topic}.`))
          if (mine.length > 0) await admin.deleteTopics({ topics: mine })
          const groups = await admin.listGroups()
          const ours = ns.groups.filter((g) => groups.has(g))
          if (ours.length > 0) await admin.deleteGroups({ groups: ours })
        } finally {
          await admin.close()
        }
      },
    ],
    ...redisCleanup(ns.redis),
  ]
}

/** Runs each step on its own: one failing (reported on stderr) does not keep the others from cleaning up. */
export async function runCleanup(steps: CleanupStep[]): Promise<void> {
  for (const [step, run] of steps) {
    try {
      await run()
    } catch (err) {
      process.stderr.write(`cleanup of ${step} failed: ${(err as Error).message}\n`)
    }
  }
}
