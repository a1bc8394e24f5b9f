/**
 * A 50 MB bad line in a price CSV, through the real `bourse update-prices`: the error
 * quotes a cut piece of it and still names the line, instead of copying 50 MB to stderr.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { closeTestRedis, openTestRedis, runCli } from '../helpers/infra.ts'

const HUGE = 50 * 1024 * 1024

describe('a huge bad CSV line', () => {
  let redis: Redis
  let dir: string
  before(async () => {
    redis = await openTestRedis()
    dir = mkdtempSync(join(tmpdir(), 'bourse-huge-line-'))
  })
  beforeEach(() => redis.flushdb())
  after(async () => {
    await closeTestRedis(redis)
    rmSync(dir, { recursive: true, force: true })
  })

  const cases: Array<[string, string, RegExp]> = [
    ['price', `090001,stock1,${'9'.repeat(HUGE)}x`, /^.*: line 3: price "9{100}"… \(52428801 characters\) is not a non-negative number \(skipped\)$/],
    ['stock', `090001,s${'x'.repeat(HUGE)},10`, /^.*: line 3: stock "sx{99}"… \(52428801 characters\) must be a letter/],
    ['time', `${'0'.repeat(HUGE)},stock1,10`, /^.*: line 3: time "0{100}"… \(52428800 characters\) is not hhmmss/],
  ]
  for (const [column, line, reported] of cases) {
    it(`in the ${column} column: stderr stays small, names the line, and the good rows load`, async () => {
      const csv = join(dir, `${column}.csv`)
      writeFileSync(csv, ['Time,Stock,Price', '090000,stock1,10', line, '090002,stock1,12', ''].join('\n'))
      const result = await runCli(['update-prices', '--csv', csv])
      assert.equal(result.code, 0, result.stderr.slice(0, 2000))
      assert.ok(result.stderr.length < 1000, `stderr has ${result.stderr.length} characters`)
      const lines = result.stderr.trimEnd().split('\n')
      assert.equal(lines.length, 1, result.stderr)
      assert.match(lines[0]!, reported)
      assert.match(result.stdout, /2 rows read, 2 appended, 0 price updates, 1 bad lines skipped/)
      assert.deepEqual(JSON.parse((await redis.get('stock1'))!), { performance: 0, time: ['090000', '090002'], price: [10, 12] })
    })
  }

  it('as the header: the command fails with a short message', async () => {
    const csv = join(dir, 'header.csv')
    writeFileSync(csv, `${'T'.repeat(HUGE)}\n090000,stock1,10\n`)
    const result = await runCli(['update-prices', '--csv', csv])
    assert.equal(result.code, 1, result.stderr.slice(0, 2000))
    assert.ok(result.stderr.length < 1000, `stderr has ${result.stderr.length} characters`)
    assert.match(result.stderr, /line 1 must be the header "Time,Stock,Price" \(got "T{100}"… \(52428800 characters\)\)/)
    assert.equal(await redis.dbsize(), 0)
  })
})
