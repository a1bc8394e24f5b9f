/** The `userN` projection in the real Redis: versions, forcing, and auto-pipelined connections. */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createLogger } from '../../src/platform/logger.ts'
import { closeRedis, createRedis } from '../../src/platform/redis.ts'
import { defineUserProjection, projectUser } from '../../src/trading/user-projection.ts'
import { closeTestRedis, openTestRedis, testRedisUrl } from '../helpers/infra.ts'

let redis: Redis
const log = createLogger({ level: 'warn', pretty: false })

before(async () => {
  redis = await openTestRedis()
})
beforeEach(() => redis.flushdb())
after(() => closeTestRedis(redis))

const row = (credit: string, version: number) => ({ id: 'user7', contract_id: 7, credit, version: String(version) })
const stored = async () => JSON.parse((await redis.get('user7')) ?? 'null') as unknown

test('the newest version wins, whatever order the writes come in; force writes an older one', async () => {
  assert.equal(await projectUser(redis, row('100.5000', 2)), true)
  assert.deepEqual(await stored(), { id: 7, credit: 100.5 })
  assert.equal(await projectUser(redis, row('90', 1)), false, 'an older version is not written')
  assert.deepEqual(await stored(), { id: 7, credit: 100.5 })
  assert.equal(await projectUser(redis, row('80', 3)), true)
  assert.deepEqual(await stored(), { id: 7, credit: 80 })
  assert.equal(await projectUser(redis, row('70', 1), { force: true }), true)
  assert.deepEqual(await stored(), { id: 7, credit: 70 })
})

test('on an auto-pipelined connection, projections sent in the same turn as other commands are written', async () => {
  const pipelined = createRedis(testRedisUrl, log, 'projection-test', { autoPipelining: true })
  try {
    defineUserProjection(pipelined)
    // The first commands of the connection, all in one turn: one pipeline carries them.
    const [published, written, again] = await Promise.all([
      pipelined.publish('bourse:test', 'x'),
      projectUser(pipelined, row('50', 1)),
      projectUser(pipelined, row('60', 2)),
    ])
    assert.equal(published, 0)
    assert.deepEqual([written, again], [true, true])
    assert.deepEqual(await stored(), { id: 7, credit: 60 })
  } finally {
    await closeRedis(pipelined)
  }
})
