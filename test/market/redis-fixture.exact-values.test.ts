/**
 * `bourse seed` stores a fixture's values exactly as written. Before, the stock went
 * through Redis's cjson, which keeps 14 significant digits (`999999999999999` became
 * `1e+15`, `12345678901234567` became `1.2345678901235e+16`) and writes `[]` as `{}`, and
 * the user's credit went through a float. Every value now comes back with the fixture's
 * own text; only the whitespace between tokens and the order of the fields change
 * (`performance`, `time` and `price` last), also after ticks and a performance
 * computation.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createStockHistoryRepository } from '../../src/market/stock-history.repository.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'

let redis: Redis
let testDb: TestDb
let dir: string
before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
  dir = mkdtempSync(join(tmpdir(), 'bourse-exact-'))
})
after(async () => {
  await closeTestRedis(redis)
  await testDb.close()
  rmSync(dir, { recursive: true, force: true })
})

const fixture = [
  `SET stock1 '{"id": 12345678901234567, "price": [999999999999999, 12345678901234567, 0.1, 1e3, 100.50, ""], ` +
    `"time": ["09:00", "09:01", "09:02", "09:03", "09:04", "09:05"], "performance": 0, "tags": [], ` +
    `"meta": {"listed": 19991231235959123, "ratio": 0.30000000000000004, "name": "caf\\u00e9", "none": null}}'`,
  `SET stockB '{"time": [], "price": []}'`,
  `SET user1 '{"id": 2147483647, "credit": 1234567890123456.7}'`,
  `SET user2 '{"id": 2, "credit": 9999999999999999.9999}'`,
  `SET user3 '{"id": 3, "credit": 1.5e3}'`,
].join('\n')

const fields =
  '"id":12345678901234567,"tags":[],' +
  '"meta":{"listed":19991231235959123,"ratio":0.30000000000000004,"name":"caf\\u00e9","none":null}'
const times = '"09:00","09:01","09:02","09:03","09:04","09:05"'
const prices = '999999999999999,12345678901234567,0.1,1e3,100.50,""'

test('every value of a stock and of a user comes back as the fixture wrote it', async () => {
  const file = join(dir, 'exact.txt')
  writeFileSync(file, `${fixture}\n`)
  const seeded = await runCli(['seed', file], testEnv(testDb.env))
  assert.equal(seeded.code, 0, seeded.stderr)

  assert.equal(await redis.get('stock1'), `{${fields},"performance":0,"time":[${times}],"price":[${prices}]}`)
  assert.equal(await redis.get('stockB'), '{"performance":0,"time":[],"price":[]}')
  assert.equal(await redis.get('user1'), '{"id":2147483647,"credit":1234567890123456.7}')
  assert.equal(await redis.get('user2'), '{"id":2,"credit":9999999999999999.9999}')
  assert.equal(await redis.get('user3'), '{"id":3,"credit":1500}')
  const credits = await testDb.db.selectFrom('users').select(['id', 'credit']).orderBy('id').execute()
  assert.deepEqual(credits, [
    { id: 'user1', credit: '1234567890123456.7000' },
    { id: 'user2', credit: '9999999999999999.9999' },
    { id: 'user3', credit: '1500.0000' },
  ])

  // A tick appended and a performance computed leave the other values as they were.
  const csv = join(dir, 'ticks.csv')
  writeFileSync(csv, 'Time,Stock,Price\n090600,stock1,7\n')
  const loaded = await runCli(['update-prices', '--csv', csv])
  assert.equal(loaded.code, 0, loaded.stderr)
  const history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
  const [claimed] = await history.claimChanged('test', 60_000, 10)
  assert.equal(claimed?.stock, 'stock1')
  assert.equal(await history.completePerformance('stock1', 'test', -99.99999999999993, claimed.version), true)
  assert.equal(
    await redis.get('stock1'),
    `{${fields},"performance":-99.99999999999993,"time":[${times},"090600"],"price":[${prices},7]}`,
  )
})
