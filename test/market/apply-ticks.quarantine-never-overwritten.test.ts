/**
 * Fault: a foreign value met by a tick was renamed to `bourse:quarantine:S` whatever was
 * there, so a value quarantined earlier (by `seed`, or a previous tick) was silently
 * overwritten and lost. It now goes to the first free name, `bourse:quarantine:S:2`, `:3`...
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createStockHistoryRepository } from '../../src/market/stock-history.repository.ts'
import { closeTestRedis, openTestRedis } from '../helpers/infra.ts'

let redis: Redis
before(async () => {
  redis = await openTestRedis()
})
after(async () => {
  await closeTestRedis(redis)
})

test('a foreign value is quarantined under a free name; earlier quarantined values stay', async () => {
  const history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
  await redis.set('bourse:quarantine:foreign', 'set aside before')
  await redis.set('bourse:quarantine:foreign:2', 'set aside before, too')
  await redis.rpush('foreign', 'a list')
  await redis.set('plain', 'not a contract JSON')
  const result = await history.applyTicks([
    { stock: 'foreign', time: '090000', price: 1 },
    { stock: 'plain', time: '090000', price: 2 },
  ])
  assert.equal(result.quarantined, 2)
  assert.equal(await redis.get('bourse:quarantine:foreign'), 'set aside before')
  assert.equal(await redis.get('bourse:quarantine:foreign:2'), 'set aside before, too')
  assert.deepEqual(await redis.lrange('bourse:quarantine:foreign:3', 0, -1), ['a list'])
  assert.equal(await redis.get('bourse:quarantine:plain'), 'not a contract JSON')
  assert.deepEqual(JSON.parse((await redis.get('foreign'))!), { performance: 0, time: ['090000'], price: [1] })
  assert.deepEqual(JSON.parse((await redis.get('plain'))!), { performance: 0, time: ['090000'], price: [2] })
})
