/**
 * The test suite in lanes: test files run one at a time per lane, lanes side by side,
 * each lane on a Redis database of its own. Files are handed out longest first (by the
 * durations recorded in `test/durations.json`) to whichever lane is free, so the lanes
 * end close together. Files that must not share the machine run after the lanes, alone;
 * files that are heavy on the CPU run beside light files only, never beside each other.
 *
 * `scripts/test.ts` runs it; this module holds the parts a test can drive.
 */
import { type ChildProcess, spawn } from 'node:child_process'

/** How many lanes run unless `BOURSE_TEST_LANES` says otherwise. */
export const DEFAULT_LANES = 2

/** The Redis database of the first lane unless `BOURSE_TEST_REDIS_DB` says otherwise (as in test/helpers/infra.ts). */
export const DEFAULT_REDIS_DB = 13

/** Redis's default number of databases (`databases 16`): the last lane's index must stay below it. */
export const REDIS_DATABASES = 16

/** What a test file may share the machine with. */
export type Sharing = 'alone' | 'heavy' | 'any'

/**
 * The files that may not run beside any other file (`alone`), or not beside another
 * heavy one (`heavy`), and why. Every other file shares the machine with anything: it
 * has its own Redis database (its lane's), its own PostgreSQL schema, topics and consumer
 * groups with random suffixes, free ports, and temporary directories of its own.
 */
export const SHARING: Readonly<Record<string, { sharing: Exclude<Sharing, 'any'>; why: string }>> = {
  'test/alerts/schedule.simulation.test.ts': { sharing: 'heavy', why: '10,000 alerts through worker threads for 2 simulated hours' },
  'test/services/alerts-worker.crash.test.ts': { sharing: 'heavy', why: '2,000 runs on real worker processes, 6 SIGKILLs' },
  'test/services/price-updater.crash.test.ts': { sharing: 'heavy', why: 'a 100,000-tick ingest, 10 SIGKILLs' },
  'test/services/faults.redis-data-loss.rebuild-200k.test.ts': { sharing: 'heavy', why: '200,000 ticks ingested twice' },
  'test/services/trading.crash.test.ts': {
    sharing: 'alone',
    why: '1,000 orders, 8 SIGKILLs, each once the restarted service works: with slow process starts beside another lane the orders all ended before the last kills',
  },
  'test/events/fuzz.test.ts': { sharing: 'heavy', why: 'generated requests, CPU-bound' },
  'test/scripts/openapi.fuzz.test.ts': { sharing: 'heavy', why: '10,000 generated requests per operation, CPU-bound' },
  'test/platform/infra/kafka-broker.keeps-data.test.ts': { sharing: 'heavy', why: 'starts and stops a Kafka JVM several times' },
  'test/services/faults.broker-kill.test.ts': {
    sharing: 'heavy',
    why: 'a Kafka JVM of its own killed and restarted under orders and events load, with four services; beside another JVM restart it took 2 min in CI and failed once',
  },
  'test/events/broker-down.fail-fast.test.ts': { sharing: 'heavy', why: 'bounds how long a refusal takes (1 s)' },
  'test/trading/broker-down.fail-fast.test.ts': { sharing: 'heavy', why: 'bounds how long a refusal takes (1 s)' },
  'test/events/broker-down.test.ts': { sharing: 'heavy', why: 'bounds how long a 503 takes' },
  'test/dashboard/dashboard.test.ts': { sharing: 'heavy', why: 'a browser and five services; bounds how soon a killed service turns red' },
  'test/btc/btc.routes.test.ts': { sharing: 'heavy', why: '500 concurrent orders racing for the cap' },
}

/** How `file` may share the machine. */
export function sharingOf(file: string): Sharing {
  return SHARING[file]?.sharing ?? 'any'
}

/** The counts a `node --test` run reports at its end. */
export interface Counts {
  tests: number
  suites: number
  pass: number
  fail: number
  cancelled: number
  skipped: number
  todo: number
}

/** One test file's run. */
export interface FileResult {
  file: string
  /** 1-based lane number; the files run alone report lane 1, whose database they use. */
  lane: number
  /** Exit code of `node --test` (null when it was killed by a signal). */
  code: number | null
  signal: NodeJS.Signals | null
  /** Wall time of the file's `node --test`, in ms. */
  ms: number
  /** Its standard output and error, in the order they came. */
  output: string
  /** The counts it printed; undefined when it died before printing them. */
  counts: Counts | undefined
  /** Run in the phase after the lanes, with nothing beside it. */
  alone?: boolean
}

/** Whether a file's run failed: a non-zero exit, a signal, no counts, or a failed test. */
export function failed(result: FileResult): boolean {
  return result.code !== 0 || result.signal !== null || result.counts === undefined || result.counts.fail > 0 || result.counts.cancelled > 0
}

const COUNT_NAMES = ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo'] as const

/**
 * The counts at the end of the spec reporter's output (`ℹ tests 13`, `ℹ pass 13`, ...).
 * The last line of each name wins: a test's own diagnostics come before the summary.
 */
export function parseCounts(output: string): Counts | undefined {
  // eslint-disable-next-line no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '')
  const found = new Map<string, number>()
  for (const match of plain.matchAll(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) {
    found.set(match[1]!, Number(match[2]))
  }
  if (!COUNT_NAMES.every((name) => found.has(name))) return undefined
  return Object.fromEntries(COUNT_NAMES.map((name) => [name, found.get(name)!])) as unknown as Counts
}

/** Adds counts up (a file without counts adds nothing). */
export function sumCounts(results: readonly FileResult[]): Counts {
  const total: Counts = { tests: 0, suites: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 }
  for (const { counts } of results) {
    if (!counts) continue
    for (const name of COUNT_NAMES) total[name] += counts[name]
  }
  return total
}

/** Reads an integer variable, or throws an error naming it. */
function integerVariable(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  const value = Number(raw)
  if (!/^\s*\d+\s*$/.test(raw) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

/** The lane settings: how many lanes, and each lane's Redis database. */
export interface LaneSettings {
  lanes: number
  /** Redis database of lane i+1: `BOURSE_TEST_REDIS_DB` + i. */
  redisDbs: number[]
}

/**
 * `BOURSE_TEST_LANES` (default {@link DEFAULT_LANES}; 1 runs every file in one lane, one
 * after the other) and `BOURSE_TEST_REDIS_DB`, the first lane's database (default
 * {@link DEFAULT_REDIS_DB}); lane i+1 uses that database + i.
 */
export function readLaneSettings(env: NodeJS.ProcessEnv): LaneSettings {
  const lanes = integerVariable(env, 'BOURSE_TEST_LANES', DEFAULT_LANES, 1, REDIS_DATABASES)
  const first = integerVariable(env, 'BOURSE_TEST_REDIS_DB', DEFAULT_REDIS_DB, 0, REDIS_DATABASES - 1)
  if (first + lanes > REDIS_DATABASES) {
    throw new Error(
      `BOURSE_TEST_LANES=${lanes} lanes from BOURSE_TEST_REDIS_DB=${first} need Redis databases ${first} to ${first + lanes - 1}, ` +
        `but Redis has ${REDIS_DATABASES} (0 to ${REDIS_DATABASES - 1}): lower one of them`,
    )
  }
  return { lanes, redisDbs: Array.from({ length: lanes }, (_, i) => first + i) }
}

/**
 * The files in the order they are handed out: longest recorded duration first; a file
 * without a record counts as the median one. Ties keep path order.
 */
export function longestFirst(files: readonly string[], durations: Readonly<Record<string, number>>): string[] {
  const known = files.map((f) => durations[f]).filter((d): d is number => d !== undefined).sort((a, b) => a - b)
  const median = known.length === 0 ? 0 : known[Math.floor(known.length / 2)]!
  const estimate = (file: string) => durations[file] ?? median
  return [...files].sort((a, b) => estimate(b) - estimate(a) || (a < b ? -1 : a > b ? 1 : 0))
}

/** What {@link runLanes} needs. */
export interface LanePlan {
  /** The files in the order to hand them out. */
  files: readonly string[]
  lanes: number
  /** How a file may share the machine (default `any`). */
  sharing: (file: string) => Sharing
  /** Runs one file on a lane (1-based). */
  runFile: (file: string, lane: number) => Promise<FileResult>
  /** Called as each file ends, in the order they end. */
  onResult?: (result: FileResult) => void
  /** Checked before each start: once true, no further file starts. */
  stopped?: () => boolean
}

/**
 * Runs the files on `lanes` lanes: a free lane takes the first file it may run (a
 * `heavy` file only while no other heavy file runs); when every lane has finished, the
 * `alone` files run one after the other with nothing beside them. Resolves with every
 * result, in the order the files ended.
 */
export async function runLanes(plan: LanePlan): Promise<FileResult[]> {
  const results: FileResult[] = []
  const record = (result: FileResult) => {
    results.push(result)
    plan.onResult?.(result)
  }
  const queue = plan.files.filter((f) => plan.sharing(f) !== 'alone')
  const alone = plan.files.filter((f) => plan.sharing(f) === 'alone')
  let heavyRunning = false
  // Lanes waiting for the heavy file to end are woken when any file ends.
  let wake: () => void = () => {}
  let changed = new Promise<void>((resolve) => (wake = resolve))
  const notify = () => {
    const resolve = wake
    changed = new Promise<void>((r) => (wake = r))
    resolve()
  }

  const lane = async (number: number) => {
    for (;;) {
      if (queue.length === 0 || plan.stopped?.()) return
      const index = queue.findIndex((f) => !(heavyRunning && plan.sharing(f) === 'heavy'))
      if (index === -1) {
        await changed
        continue
      }
      const [file] = queue.splice(index, 1) as [string]
      const heavy = plan.sharing(file) === 'heavy'
      if (heavy) heavyRunning = true
      try {
        record(await plan.runFile(file, number))
      } finally {
        if (heavy) heavyRunning = false
        notify()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, plan.lanes) }, (_, i) => lane(i + 1)))
  for (const file of alone) {
    if (plan.stopped?.()) break
    record({ ...(await plan.runFile(file, 1)), alone: true })
  }
  return results
}

/** How {@link runTestFile} starts `node --test`. */
export interface TestFileOptions {
  /** The Node binary (default: this process's). */
  node?: string
  cwd: string
  env: NodeJS.ProcessEnv
  /** Started children, so that a signal can be passed on to them. */
  children?: Set<ChildProcess>
}

/** The `node --test` arguments of one file, as `npm test` ran the suite before lanes. */
export function nodeTestArgs(file: string): string[] {
  return ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-reporter=spec', file]
}

/** Runs one test file in its own `node --test` on `redisDb`, its output kept for printing whole. */
export async function runTestFile(file: string, lane: number, redisDb: number, options: TestFileOptions): Promise<FileResult> {
  const startedAt = performance.now()
  // Without NODE_TEST_CONTEXT: set (by a test running this runner), it makes `node --test` skip every file.
  const { NODE_TEST_CONTEXT: _context, ...env } = options.env
  const child = spawn(options.node ?? process.execPath, nodeTestArgs(file), {
    cwd: options.cwd,
    env: { ...env, BOURSE_TEST_REDIS_DB: String(redisDb) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  options.children?.add(child)
  const chunks: string[] = []
  child.stdout.setEncoding('utf8').on('data', (d: string) => chunks.push(d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => chunks.push(d))
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c, s) => resolve([c, s]))
  }).finally(() => options.children?.delete(child))
  const output = chunks.join('')
  return { file, lane, code, signal, ms: performance.now() - startedAt, output, counts: parseCounts(output) }
}

/** `1m 05s`, `12.3 s`. */
export function formatDuration(ms: number): string {
  const seconds = ms / 1000
  if (seconds < 60) return `${seconds.toFixed(1)} s`
  const minutes = Math.floor(seconds / 60)
  return `${minutes}m ${String(Math.round(seconds - minutes * 60)).padStart(2, '0')}s`
}

/** A file's output as printed: without the counts at its end, which its header line gives. */
export function printable(output: string): string {
  const text = output.replace(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) [\d.]+\n?/gm, '')
  return text === '' || text.endsWith('\n') ? text : `${text}\n`
}

/** The header line printed above a file's output. */
export function fileHeader(result: FileResult, done: number, total: number): string {
  const c = result.counts
  const outcome = c ? `${c.pass} passed, ${c.fail} failed${c.cancelled ? `, ${c.cancelled} cancelled` : ''}${c.skipped ? `, ${c.skipped} skipped` : ''}` : 'no summary'
  const exit = result.signal ? `killed by ${result.signal}` : `exit ${result.code}`
  const mark = failed(result) ? '✖ FAILED' : '✔'
  const where = result.alone ? 'alone' : `lane ${result.lane}`
  return `── [${done}/${total}] ${mark} ${result.file} · ${where} · ${formatDuration(result.ms)} · ${outcome} · ${exit}`
}

/** How much of a failed file's output is printed again at the end, at most. */
export const FAILURE_DIGEST_CHARS = 6000

/**
 * A failed file's output printed again just above the summary, so that the end of a long
 * log says why: the spec reporter's "failing tests" part (each failed test with its error),
 * or, when the file died before it, the file's last lines. Cut to its last `max` characters.
 */
export function failureDigest(result: FileResult, max = FAILURE_DIGEST_CHARS): string {
  const text = printable(result.output)
  // eslint-disable-next-line no-control-regex
  const at = text.search(/^(\x1b\[[0-9;]*m)?✖ failing tests:/m)
  const part = at >= 0 ? text.slice(at) : text
  const cut = part.length > max ? `… (${part.length - max} characters before this cut)\n${part.slice(-max)}` : part
  return `\n── output of ${result.file}, which failed (${at >= 0 ? 'its failing tests' : 'its end'}):\n${cut}`
}

/** The summary printed at the end. */
export function summary(results: readonly FileResult[], lanes: number, wallMs: number, expected: number): string {
  const total = sumCounts(results)
  const bad = results.filter(failed)
  const time = (runs: readonly FileResult[]) => runs.reduce((sum, r) => sum + r.ms, 0)
  const busy = Array.from({ length: lanes }, (_, i) => time(results.filter((r) => !r.alone && r.lane === i + 1)))
  const alone = results.filter((r) => r.alone)
  const lines = [
    '',
    `══ ${results.length} of ${expected} test files in ${lanes} lane${lanes === 1 ? '' : 's'}, ${formatDuration(wallMs)} wall time ` +
      `(the files' own times add up to ${formatDuration(time(results))})`,
    `   tests ${total.tests} · pass ${total.pass} · fail ${total.fail} · cancelled ${total.cancelled} · skipped ${total.skipped} · todo ${total.todo}`,
    `   per lane: ${busy.map((ms, i) => `lane ${i + 1} ${formatDuration(ms)}`).join(' · ')}` +
      (alone.length > 0 ? `, then ${alone.length} file(s) alone ${formatDuration(time(alone))}` : ''),
    `   slowest: ${[...results].sort((a, b) => b.ms - a.ms).slice(0, 5).map((r) => `${r.file} ${formatDuration(r.ms)}`).join(' · ')}`,
  ]
  if (results.length < expected) lines.push(`   ${expected - results.length} file(s) did not run (stopped)`)
  if (bad.length === 0) lines.push('   all files passed')
  else {
    lines.push(`   ${bad.length} file(s) failed:`)
    for (const r of bad) lines.push(`     ${r.file} (lane ${r.lane}, ${r.signal ? `killed by ${r.signal}` : `exit ${r.code}`}${r.counts ? `, ${r.counts.fail} failed` : ', no summary'})`)
  }
  return `${lines.join('\n')}\n`
}
