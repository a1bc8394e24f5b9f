/**
 * A negative price in a fixture is refused with its line number, and `bourse seed` then
 * writes nothing. Before, it was stored, and BuyStock answered Accept with a negative
 * cost for any quantity.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { parseRedisFixture } from '../../src/market/redis-fixture.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'

const lines = [
  `SET stock1 '{"id": 1, "price": [1000, ""], "time": ["09:00", "09:01"], "performance": 0}'`,
  `SET stock2 '{"id": 2, "price": [450, -0.5, ""], "time": ["09:00", "09:01", "09:02"], "performance": 0}'`,
  `SET user1 '{"id": 1, "credit": 100}'`,
  `SET stock3 '{"id": 3, "price": [-1682], "time": ["09:00"]}'`,
]

test('the parser names each negative price with its line and position', () => {
  const fixture = parseRedisFixture(lines.join('\n'))
  assert.deepEqual(fixture.errors, [
    'line 2: stock2: price -0.5 at position 2 is negative: prices must be at least 0',
    'line 4: stock3: price -1682 at position 1 is negative: prices must be at least 0',
  ])
  assert.deepEqual(
    fixture.entries.map((e) => e.key),
    ['stock1', 'user1'],
  )
})

let redis: Redis
let testDb: TestDb
let dir: string
before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
  dir = mkdtempSync(join(tmpdir(), 'bourse-negative-'))
})
after(async () => {
  await closeTestRedis(redis)
  await testDb.close()
  rmSync(dir, { recursive: true, force: true })
})

test('bourse seed refuses the file (exit 1) and writes nothing', async () => {
  const file = join(dir, 'negative.txt')
  writeFileSync(file, `${lines.join('\n')}\n`)
  const result = await runCli(['seed', file], testEnv(testDb.env))
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /nothing loaded/)
  assert.match(result.stderr, /line 2: stock2: price -0\.5 at position 2 is negative/)
  assert.match(result.stderr, /line 4: stock3: price -1682 at position 1 is negative/)
  assert.equal(await redis.dbsize(), 0)
  assert.deepEqual(await testDb.db.selectFrom('users').select('id').execute(), [])
})
