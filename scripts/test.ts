/**
 * `npm test`: every `test/**\/*.test.ts` file in its own `node --test`, on lanes side by
 * side (scripts/test-lanes.ts says how files are handed out). Each file's output is
 * printed whole when it ends, under a line naming it; a summary of every lane's counts
 * ends the run, and the exit code is 1 when any file failed.
 *
 *   node scripts/test.ts [--record] [file...]
 *
 * BOURSE_TEST_LANES  lanes (default 2; 1 runs the files one after the other)
 * BOURSE_TEST_REDIS_DB  the first lane's Redis database (default 13); lane i+1 uses it + i
 * NODE_COMPILE_CACHE  where Node keeps compiled code for the next process (default tmp/node-compile-cache)
 * --record  writes each file's wall time into test/durations.json, which orders the files
 * file...  runs only these files (default: every test file)
 */
import { readFileSync, writeFileSync, globSync } from 'node:fs'
import { relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'
import {
  failed,
  failureDigest,
  fileHeader,
  type FileResult,
  longestFirst,
  printable,
  readLaneSettings,
  runLanes,
  runTestFile,
  sharingOf,
  summary,
} from './test-lanes.ts'

const root = fileURLToPath(new URL('../', import.meta.url))
const durationsFile = resolve(root, 'test/durations.json')

const args = process.argv.slice(2)
const record = args.includes('--record')
const named = args.filter((a) => a !== '--record')
const unknownOption = named.find((a) => a.startsWith('-'))
if (unknownOption !== undefined) {
  process.stderr.write(`unknown option ${unknownOption}\nusage: node scripts/test.ts [--record] [file...]\n`)
  process.exit(2)
}

let settings: ReturnType<typeof readLaneSettings>
try {
  settings = readLaneSettings(process.env)
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`)
  process.exit(78)
}

const files = (named.length > 0 ? named.map((f) => relative(root, resolve(f))) : globSync('test/**/*.test.ts', { cwd: root })).sort()
if (files.length === 0) {
  process.stderr.write('no test files\n')
  process.exit(1)
}

/** Recorded wall times by file, in seconds; none yet is fine (path order then). */
function readDurations(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(durationsFile, 'utf8')) as Record<string, number>
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new Error(`${relative(root, durationsFile)}: ${(err as Error).message}`)
  }
}
const durations = readDurations()
// One lane: the files in path order, as `node --test` alone would run them.
const order = settings.lanes === 1 ? files : longestFirst(files, durations)

/**
 * The tests start hundreds of Node processes (each file's, and the `bourse` commands and
 * services they run), each compiling the same modules again. Node's compile cache keeps
 * the compiled code on disk for the next process: a quarter less CPU per start here.
 */
const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? resolve(root, 'tmp/node-compile-cache') }

const children = new Set<ChildProcess>()
let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    process.stderr.write(`\n${signal}: stopping the running test files; no new file starts\n`)
    for (const child of children) child.kill(signal)
  })
}

process.stdout.write(
  `${files.length} test files in ${settings.lanes} lane${settings.lanes === 1 ? '' : 's'} ` +
    `(Redis databases ${settings.redisDbs.join(', ')}; BOURSE_TEST_LANES=1 runs them one after the other)\n`,
)
const startedAt = performance.now()
let done = 0
const results = await runLanes({
  files: order,
  lanes: settings.lanes,
  sharing: sharingOf,
  stopped: () => stopping,
  runFile: (file, lane) => runTestFile(file, lane, settings.redisDbs[lane - 1]!, { cwd: root, env, children }),
  onResult: (result: FileResult) => {
    done++
    process.stdout.write(`\n${fileHeader(result, done, files.length)}\n${printable(result.output)}`)
  },
})
for (const result of results.filter(failed)) process.stdout.write(failureDigest(result))
process.stdout.write(summary(results, settings.lanes, performance.now() - startedAt, files.length))

if (record) {
  for (const r of results) durations[r.file] = Math.round(r.ms / 100) / 10
  const sorted = Object.fromEntries(Object.entries(durations).sort(([a], [b]) => (a < b ? -1 : 1)))
  writeFileSync(durationsFile, `${JSON.stringify(sorted, null, 2)}\n`)
  process.stdout.write(`   durations written to ${relative(root, durationsFile)}\n`)
}

process.exitCode = stopping || results.length < files.length || results.some(failed) ? 1 : 0
