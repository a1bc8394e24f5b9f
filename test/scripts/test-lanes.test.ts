/**
 * `npm test`'s runner (scripts/test.ts): its settings, the order and placement of files on
 * lanes, the counts it adds up, and a real run over small test files of a temporary
 * directory, one of them failing.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type FileResult,
  failureDigest,
  longestFirst,
  parseCounts,
  printable,
  readLaneSettings,
  runLanes,
  type Sharing,
  SHARING,
  sumCounts,
} from '../../scripts/test-lanes.ts'
import { repoRoot } from '../helpers/infra.ts'

const SPEC_END = ['ℹ tests 3', 'ℹ suites 1', 'ℹ pass 2', 'ℹ fail 1', 'ℹ cancelled 0', 'ℹ skipped 0', 'ℹ todo 0', 'ℹ duration_ms 512.5'].join('\n')

describe('the counts of a file', () => {
  it('reads the summary the spec reporter ends with, colours or not', () => {
    const counts = { tests: 3, suites: 1, pass: 2, fail: 1, cancelled: 0, skipped: 0, todo: 0 }
    assert.deepEqual(parseCounts(`✔ a (1ms)\nℹ pass 99 times over\n${SPEC_END}\n`), counts)
    assert.deepEqual(parseCounts(SPEC_END.replace(/^(ℹ .*)$/gm, '\x1b[34m$1\x1b[39m')), counts)
  })

  it('has none when the file died before its summary', () => {
    assert.equal(parseCounts('✔ a (1ms)\nℹ tests 1\n'), undefined)
  })

  it('adds files up, those without counts adding nothing', () => {
    const result = (output: string): FileResult => ({ file: 'f', lane: 1, code: 0, signal: null, ms: 1, output, counts: parseCounts(output) })
    assert.deepEqual(sumCounts([result(SPEC_END), result(SPEC_END), result('crashed')]), {
      tests: 6, suites: 2, pass: 4, fail: 2, cancelled: 0, skipped: 0, todo: 0,
    })
  })

  it('a failed file that died before its failing tests part is printed again by its last characters', () => {
    const result = (output: string): FileResult => ({ file: 'f.test.ts', lane: 1, code: 1, signal: null, ms: 1, output, counts: parseCounts(output) })
    const died = failureDigest(result(`${'x'.repeat(50)}\nError: boom\n`), 20)
    assert.equal(died, '\n── output of f.test.ts, which failed (its end):\n… (43 characters before this cut)\nxxxxxxx\nError: boom\n')
    const failing = failureDigest(result(`✔ a (1ms)\n✖ b (2ms)\n\n✖ failing tests:\n\ntest at f.test.ts:3:1\n✖ b (2ms)\n  boom\n${SPEC_END}\n`))
    assert.equal(failing, '\n── output of f.test.ts, which failed (its failing tests):\n✖ failing tests:\n\ntest at f.test.ts:3:1\n✖ b (2ms)\n  boom\n')
  })

  it('is left out of the printed output, which keeps the rest', () => {
    assert.equal(printable(`✔ a (1ms)\n${SPEC_END}\n`), '✔ a (1ms)\n')
    assert.equal(printable('no newline'), 'no newline\n')
  })
})

describe('the lane settings', () => {
  it('are 2 lanes on Redis databases 13 and 14 by default; lane i+1 uses BOURSE_TEST_REDIS_DB + i', () => {
    assert.deepEqual(readLaneSettings({}), { lanes: 2, redisDbs: [13, 14] })
    assert.deepEqual(readLaneSettings({ BOURSE_TEST_LANES: '1', BOURSE_TEST_REDIS_DB: '11' }), { lanes: 1, redisDbs: [11] })
    assert.deepEqual(readLaneSettings({ BOURSE_TEST_LANES: '3', BOURSE_TEST_REDIS_DB: '11' }), { lanes: 3, redisDbs: [11, 12, 13] })
  })

  it('refuse a bad value, naming the variable', () => {
    for (const bad of ['0', '-1', '1.5', 'two', '17']) {
      assert.throws(() => readLaneSettings({ BOURSE_TEST_LANES: bad }), /^Error: BOURSE_TEST_LANES must be an integer from 1 to 16/)
    }
    assert.throws(() => readLaneSettings({ BOURSE_TEST_REDIS_DB: '16' }), /^Error: BOURSE_TEST_REDIS_DB must be an integer from 0 to 15/)
    assert.throws(() => readLaneSettings({ BOURSE_TEST_LANES: '2', BOURSE_TEST_REDIS_DB: '15' }), /need Redis databases 15 to 16/)
  })
})

describe('the order and placement of files', () => {
  it('hands out the longest recorded file first, an unrecorded one as the median', () => {
    const durations = { 'a.test.ts': 1, 'b.test.ts': 50, 'c.test.ts': 10, 'd.test.ts': 10 }
    assert.deepEqual(longestFirst(['a.test.ts', 'b.test.ts', 'c.test.ts', 'd.test.ts', 'new.test.ts'], durations), [
      'b.test.ts', 'c.test.ts', 'd.test.ts', 'new.test.ts', 'a.test.ts',
    ])
  })

  it('runs every file once; heavy files never beside each other; alone files after the lanes, with nothing beside them', async () => {
    const sharing: Record<string, Sharing> = { h1: 'heavy', h2: 'heavy', h3: 'heavy', x1: 'alone', x2: 'alone' }
    const files = ['h1', 'h2', 'a', 'b', 'x1', 'h3', 'c', 'd', 'x2', 'e']
    const running = new Set<string>()
    const seen: string[] = []
    let most = 0
    const results = await runLanes({
      files,
      lanes: 3,
      sharing: (f) => sharing[f] ?? 'any',
      runFile: async (file, lane) => {
        const beside = [...running]
        running.add(file)
        most = Math.max(most, running.size)
        if (sharing[file] === 'heavy') assert.ok(!beside.some((f) => sharing[f] === 'heavy'), `${file} beside ${beside.join(', ')}`)
        if (sharing[file] === 'alone') assert.deepEqual(beside, [], `${file} alone`)
        else assert.ok(!beside.some((f) => sharing[f] === 'alone'), `${file} beside an alone file`)
        seen.push(file)
        await new Promise((resolve) => setTimeout(resolve, file.startsWith('h') ? 30 : 5))
        running.delete(file)
        return { file, lane, code: 0, signal: null, ms: 1, output: '', counts: undefined }
      },
    })
    assert.deepEqual([...seen].sort(), [...files].sort())
    assert.deepEqual(seen.slice(-2), ['x1', 'x2'])
    assert.equal(most, 3, 'three lanes side by side')
    assert.deepEqual(results.filter((r) => r.alone).map((r) => [r.file, r.lane]), [['x1', 1], ['x2', 1]])
    assert.ok(results.every((r) => r.lane >= 1 && r.lane <= 3))
  })

  it('starts nothing once stopped', async () => {
    let started = 0
    const results = await runLanes({
      files: ['a', 'b', 'c', 'd'],
      lanes: 2,
      sharing: () => 'any',
      stopped: () => started >= 2,
      runFile: async (file, lane) => {
        started++
        return { file, lane, code: 0, signal: null, ms: 1, output: '', counts: undefined }
      },
    })
    assert.equal(results.length, 2)
  })

  it('names only test files that exist', () => {
    for (const file of Object.keys(SHARING)) assert.ok(existsSync(join(repoRoot, file)), `${file} exists`)
  })
})

describe('a run of scripts/test.ts', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bourse-lanes-test-'))
    const passing = (name: string) =>
      `import { test } from 'node:test'\ntest('${name}', () => { console.log('${name} on Redis database', process.env.BOURSE_TEST_REDIS_DB) })\n`
    await writeFile(join(dir, 'one.test.ts'), passing('one'))
    await writeFile(join(dir, 'two.test.ts'), passing('two'))
    await writeFile(
      join(dir, 'three.test.ts'),
      `import assert from 'node:assert/strict'\nimport { test } from 'node:test'\ntest('passes', () => {})\ntest('fails', () => { assert.equal(1, 2) })\n`,
    )
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** Runs scripts/test.ts on the named files of the temporary directory. */
  const run = (env: Record<string, string>, files = ['one', 'two', 'three']) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const args = ['scripts/test.ts', ...files.map((f) => join(dir, `${f}.test.ts`))]
      execFile(process.execPath, args, { cwd: repoRoot, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr })
      })
    })

  it('runs every file on its lane database, prints each whole under its name, sums up, and exits 1 for the failing one', async () => {
    const { code, stdout } = await run({ BOURSE_TEST_LANES: '2', BOURSE_TEST_REDIS_DB: '14' })
    assert.equal(code, 1, stdout)
    assert.match(stdout, /^3 test files in 2 lanes \(Redis databases 14, 15;/)
    assert.match(stdout, /── \[\d\/3\] ✖ FAILED \S*three\.test\.ts · lane [12] · [\d.]+ s · 1 passed, 1 failed · exit 1\n/)
    assert.match(stdout, /── \[\d\/3\] ✔ \S*one\.test\.ts · lane ([12]) · [\d.]+ s · 1 passed, 0 failed · exit 0\none on Redis database 1[45]\n/)
    const lane = Number(/one\.test\.ts · lane ([12])/.exec(stdout)![1])
    assert.match(stdout, new RegExp(`one on Redis database ${13 + lane}\\n`), 'lane 1 on 14, lane 2 on 15')
    assert.match(stdout, /══ 3 of 3 test files in 2 lanes, [\d.]+ s wall time/)
    assert.match(stdout, /\n {3}tests 4 · pass 3 · fail 1 · cancelled 0 · skipped 0 · todo 0\n/)
    assert.match(stdout, /1 file\(s\) failed:\n {5}\S*three\.test\.ts \(lane [12], exit 1, 1 failed\)/)
    assert.doesNotMatch(stdout, /^ℹ tests/m, "each file's counts are in its header line")
    const digest = stdout.slice(stdout.lastIndexOf('── output of '), stdout.indexOf('══ 3 of 3'))
    assert.match(digest, /^── output of \S*three\.test\.ts, which failed \(its failing tests\):\n✖ failing tests:/, 'the failure again above the summary')
    assert.match(digest, /✖ fails .*\n[^]*1 !== 2/, 'with its error')
    assert.doesNotMatch(digest, /✔ passes/)
  })

  it('with one lane runs the files one after the other in path order, and exits 0 when all pass', async () => {
    const { code, stdout } = await run({ BOURSE_TEST_LANES: '1', BOURSE_TEST_REDIS_DB: '14' }, ['two', 'one'])
    assert.equal(code, 0, stdout)
    const order = [...stdout.matchAll(/── \[(\d)\/2\] ✔ \S*\/(\w+)\.test\.ts · lane 1 /g)].map((m) => `${m[1]} ${m[2]}`)
    assert.deepEqual(order, ['1 one', '2 two'])
    assert.match(stdout, /two on Redis database 14\n/)
    assert.match(stdout, /tests 2 · pass 2 · fail 0 .*\n {3}per lane: lane 1 [\d.]+ s\n/s)
    assert.match(stdout, /all files passed/)
  })

  it('refuses a bad lane count, naming the variable', async () => {
    const { code, stdout, stderr } = await run({ BOURSE_TEST_LANES: 'many' })
    assert.equal(code, 78)
    assert.equal(stdout, '')
    assert.match(stderr, /^BOURSE_TEST_LANES must be an integer from 1 to 16, got "many"$/m)
  })
})
