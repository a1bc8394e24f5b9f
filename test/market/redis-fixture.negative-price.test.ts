/**
 * A negative price in a fixture is refused with its line number, and `bourse seed` then
 * writes nothing. Before, it was stored, and BuyStock answered Accept with a negative
 * cost for any quantity.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseRedisFixture } from '../../src/market/redis-fixture.ts'
import { useSeedBench } from '../helpers/seeding.ts'

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

const bench = useSeedBench()

test('bourse seed refuses the file (exit 1) and writes nothing', async () => {
  const result = await bench.seed(lines)
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /nothing loaded/)
  assert.match(result.stderr, /line 2: stock2: price -0\.5 at position 2 is negative/)
  assert.match(result.stderr, /line 4: stock3: price -1682 at position 1 is negative/)
  assert.equal(await bench.redis.dbsize(), 0)
  assert.deepEqual(await bench.testDb.db.selectFrom('users').select('id').execute(), [])
})
