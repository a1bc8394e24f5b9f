/**
 * `bourse seed` never overwrites a key that holds another program's value: such a value
 * (not a contract JSON, or not a string at all) is moved to `bourse:quarantine:<key>`,
 * or `bourse:quarantine:<key>:2`, ... when that is taken, and the seed says so. Before,
 * the fixture's stocks and users were written over whatever the keys held.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'
import { originalFixtures } from '../helpers/market.ts'

let redis: Redis
let testDb: TestDb
before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
})
after(async () => {
  await closeTestRedis(redis)
  await testDb.close()
})

test('foreign values under the fixture keys are quarantined, contract values are replaced', async () => {
  await redis.set('stock1', 'hello, not JSON')
  await redis.set('bourse:quarantine:stock1', 'quarantined earlier')
  await redis.hset('stock2', 'owner', 'another program')
  // A contract JSON written by another tool (the seed's own redis-cli form) is replaced.
  await redis.set('stock3', '{"id": 3, "price": [1], "time": ["08:00"], "performance": 0}')
  await redis.set('user1', '[1, 2, 3]')
  await redis.rpush('user2', 'a', 'b')

  const result = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /loaded 3 stocks and 2 users/)

  assert.equal(await redis.get('bourse:quarantine:stock1'), 'quarantined earlier')
  assert.equal(await redis.get('bourse:quarantine:stock1:2'), 'hello, not JSON')
  assert.deepEqual(await redis.hgetall('bourse:quarantine:stock2'), { owner: 'another program' })
  assert.equal(await redis.exists('bourse:quarantine:stock3'), 0)
  assert.equal(await redis.get('bourse:quarantine:user1'), '[1, 2, 3]')
  assert.deepEqual(await redis.lrange('bourse:quarantine:user2', 0, -1), ['a', 'b'])
  for (const key of ['stock1', 'stock2', 'user1', 'user2']) {
    assert.match(result.stderr, new RegExp(`^${key}: .* moved to bourse:quarantine:${key}`, 'm'), key)
  }
  // The seed names where each value went: stock1's first quarantine name was taken.
  assert.match(result.stderr, /^stock1: .* moved to bourse:quarantine:stock1:2, not overwritten$/m)
  assert.doesNotMatch(result.stderr, /^stock3:/m)

  // The fixture's values are in place.
  for (const [stock, id, price] of [['stock1', 1, 1000], ['stock2', 2, 450], ['stock3', 3, 1682]] as const) {
    assert.deepEqual(JSON.parse((await redis.get(stock))!), { id, performance: 0, time: ['09:00', '09:01'], price: [price, ''] })
  }
  assert.deepEqual(JSON.parse((await redis.get('user1'))!), { id: 1, credit: 150000000 })
  assert.deepEqual(JSON.parse((await redis.get('user2'))!), { id: 2, credit: 6000000000 })

  // Seeding again replaces Bourse's own values and quarantines nothing more.
  const keys = (await redis.keys('bourse:quarantine:*')).sort()
  const again = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
  assert.equal(again.code, 0, again.stderr)
  assert.doesNotMatch(again.stderr, /quarantine/)
  assert.deepEqual((await redis.keys('bourse:quarantine:*')).sort(), keys)
})
