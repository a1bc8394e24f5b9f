/**
 * A credit or id that the accounts table cannot hold (`credit numeric(20,4)`,
 * `contract_id integer`) is refused with its line number before anything is written.
 * Before, PostgreSQL refused the whole insert with "numeric field overflow" or "integer
 * out of range" and no line, or silently rounded a fifth decimal away.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { useSeedBench } from '../helpers/seeding.ts'

const bench = useSeedBench()

const seed = (lines: string[]) => bench.seed(lines)

async function assertNothingWritten() {
  assert.equal(await bench.redis.dbsize(), 0)
  assert.deepEqual(await bench.testDb.db.selectFrom('users').select('id').execute(), [])
}

const good = [
  `SET stock1 '{"id": 1, "price": [1000, ""], "time": ["09:00", "09:01"], "performance": 0}'`,
  `SET user1 '{"id": 1, "credit": 9999999999999999.9999}'`,
]

test('a credit of 10^16 or more is refused with its line, and nothing is written', async () => {
  const result = await seed([...good, `SET user2 '{"id": 2, "credit": 10000000000000000}'`, `SET user3 '{"id": 3, "credit": 1e20}'`])
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /line 3: user2: credit 10000000000000000 is 10\^16 or more/)
  assert.match(result.stderr, /line 4: user3: credit 1e20 is 10\^16 or more/)
  assert.doesNotMatch(result.stderr, /line [12]:/)
  await assertNothingWritten()
})

test('a credit with more than 4 decimals is refused rather than rounded', async () => {
  const result = await seed([...good, `SET user2 '{"id": 2, "credit": 0.00001}'`])
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /line 3: user2: credit 0\.00001 has more than 4 decimals/)
  await assertNothingWritten()
})

test('an id outside PostgreSQL integer is refused with its line', async () => {
  const result = await seed([...good, `SET user2 '{"id": 2147483648, "credit": 1}'`, `SET user3 '{"id": -2147483649, "credit": 1}'`])
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /line 3: user2: id 2147483648 is out of range/)
  assert.match(result.stderr, /line 4: user3: id -2147483649 is out of range/)
  await assertNothingWritten()
})

test('a user field an account cannot keep is refused rather than dropped', async () => {
  const result = await seed([...good, `SET user2 '{"id": 2, "credit": 1, "name": "Ada"}'`])
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /line 3: user2: field "name" cannot be kept/)
  await assertNothingWritten()
})

test('the largest credit and id an account holds are accepted', async () => {
  const result = await seed([...good, `SET user2 '{"id": 2147483647, "credit": 0.0001}'`])
  assert.equal(result.code, 0, result.stderr)
  const users = await bench.testDb.db.selectFrom('users').select(['id', 'contract_id', 'credit']).orderBy('id').execute()
  assert.deepEqual(users, [
    { id: 'user1', contract_id: 1, credit: '9999999999999999.9999' },
    { id: 'user2', contract_id: 2147483647, credit: '0.0001' },
  ])
})
