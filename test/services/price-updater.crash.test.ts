/**
 * Crash safety of the price updater, proven by killing the real process: SIGKILL at
 * random points of a 100,000-tick ingest, at least 10 times, must end with Redis equal
 * to a clean single run (no tick lost, none applied twice).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { offsetsKey } from '../../src/market/stock-history.repository.ts'
import {
  closeTestRedis,
  createTestTopic,
  openTestRedis,
  runCli,
  startCli,
  testEnv,
  uniqueName,
  waitFor,
} from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'

const TICKS = 100_000
const KILLS = 10
let redis: Redis
let dropTopic: () => Promise<void>
const topic = uniqueName('crash-updater')
const group = 'crash-group'

before(async () => {
  redis = await openTestRedis()
  dropTopic = await createTestTopic(topic, 3)
})
after(async () => {
  await dropTopic()
  await closeTestRedis(redis)
})

test(`price updater killed ${KILLS} times with SIGKILL during a ${TICKS}-tick ingest applies each tick once`, async () => {
  // Corrections (a second tick for a time already seen) make a replayed or lost tick
  // visible in the final prices and in the change counter.
  const ticks = ticksWithCorrections(TICKS, 20, 7)
  await produceTicks(topic, ticks)
  const expected = applyToModel(new Map(), ticks)

  const applied = async () => {
    const offsets = await redis.hvals(offsetsKey(group, topic))
    return offsets.reduce((sum, o) => sum + Number(o) + 1, 0)
  }
  const args = ['price-updater', '--topic', topic, '--group', group, '--instance-id', 'crash-1']
  const env = testEnv({ MATERIALIZE_INTERVAL_MS: '100' })
  const killedAt: number[] = []
  for (let kill = 0; kill < KILLS; kill++) {
    const child = startCli([...args, '--batch-size', String(200 + Math.floor(Math.random() * 800))], env)
    const start = await applied()
    // Small steps, closely polled, and a reserve: however fast the updater runs between
    // two polls, every kill lands mid-ingest.
    const target = Math.min(start + 500 + Math.floor(Math.random() * 2500), TICKS - 20_000)
    await waitFor(async () => (await applied()) >= target, { timeoutMs: 60_000, intervalMs: 5, what: `progress to ${target}` })
    child.kill('SIGKILL')
    await once(child, 'exit')
    killedAt.push(await applied())
  }
  assert.equal(killedAt.length, KILLS)
  assert.ok(killedAt.at(-1)! < TICKS, 'the last kill still interrupted the ingest')

  const final = await runCli([...args, '--until-idle'], env)
  assert.equal(final.code, 0, final.stderr)
  assert.equal(await applied(), TICKS)

  const stored = await readStocks(redis, expected.keys())
  for (const [stock, model] of expected) {
    assert.deepEqual(stored.get(stock), model.json, `${stock} differs from a clean run`)
    const version = Number(await redis.hget(`bourse:h:${stock}:m`, 'v'))
    assert.equal(version, model.changes, `${stock} had ${version} changes applied, a clean run has ${model.changes}`)
  }
})
