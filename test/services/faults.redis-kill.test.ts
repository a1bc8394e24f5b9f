/**
 * Fault: the Redis holding the contract is killed (SIGKILL) in the middle of an ingest and
 * started again from its append-only file (`appendfsync everysec`, so up to a second of
 * its last writes may be gone). The real price-updater process must end with every
 * history equal to a clean run: no tick lost, none applied twice. Each batch's ticks and
 * offsets are written by one script, so whatever Redis kept is consistent; the updater
 * either goes on (nothing was lost) or stops with exit 65 saying that a restart resumes
 * from Redis's offsets, and the test restarts it, as a supervisor would.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Redis } from 'ioredis'
import { offsetsKey } from '../../src/market/stock-history.repository.ts'
import { createTestTopic, runCli, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'
import { type OwnRedis, startOwnRedis } from '../helpers/own-redis.ts'
import { startService } from '../helpers/processes.ts'

const TICKS = 50_000
const topic = uniqueName('fault-redis-kill')
const group = 'fault-redis-kill'
let own: OwnRedis
let dropTopic: () => Promise<void>

before(async () => {
  own = await startOwnRedis()
  dropTopic = await createTestTopic(topic, 3)
})
after(async () => {
  try {
    await dropTopic()
  } finally {
    await own.destroy()
  }
})

/** Ticks applied so far, from the offsets record (a new connection each time: Redis dies in between). */
async function applied(): Promise<number> {
  const redis = new Redis(own.url, { maxRetriesPerRequest: 1, lazyConnect: true })
  try {
    const offsets = await redis.hvals(offsetsKey(group, topic))
    return offsets.reduce((sum, o) => sum + Number(o) + 1, 0)
  } finally {
    redis.disconnect()
  }
}

test(`Redis killed with SIGKILL during a ${TICKS}-tick ingest and restarted from its append-only file: each tick applied once`, async (t) => {
  const ticks = ticksWithCorrections(TICKS, 20, 11)
  await produceTicks(topic, ticks)
  const expected = applyToModel(new Map(), ticks)
  const env = testEnv({ REDIS_URL: own.url, MATERIALIZE_INTERVAL_MS: '100' })
  const args = ['price-updater', '--topic', topic, '--group', group, '--batch-size', '500', '--idle-ms', '300']

  const updater = startService(args, env)
  t.after(() => updater.kill())
  // Past the first seconds, so that every partition has offsets fsynced before the kill.
  await waitFor(async () => (await applied()) >= TICKS * 0.3, { timeoutMs: 60_000, intervalMs: 20, what: '30% applied' })
  await own.kill()
  await own.restart()
  const keptAfterRestart = await applied()
  assert.ok(keptAfterRestart > 0 && keptAfterRestart < TICKS, `Redis kept part of the ingest (${keptAfterRestart})`)

  // The updater either goes on to the end or stops, saying a restart resumes.
  const exited = new Promise<number | null>((resolve) => updater.child.once('exit', (code) => resolve(code)))
  const outcome = await Promise.race([
    exited.then((code) => ({ exited: code })),
    waitFor(async () => (await applied()) === TICKS, { timeoutMs: 60_000, intervalMs: 100, what: 'every tick applied' }).then(
      () => ({ exited: undefined }),
    ),
  ])
  t.diagnostic(`Redis kept ${keptAfterRestart} ticks; the updater ${outcome.exited === undefined ? 'went on' : `exited ${outcome.exited}`}`)
  if (outcome.exited !== undefined) {
    assert.equal(outcome.exited, 65, updater.output())
    assert.match(updater.output(), /went back to \d+, below \d+ already applied.*start the price updater again/s)
  } else {
    assert.equal(await updater.stop(), 0, updater.output())
  }
  const final = await runCli([...args, '--until-idle'], env)
  assert.equal(final.code, 0, final.stderr)
  assert.equal(await applied(), TICKS)

  const redis = new Redis(own.url)
  try {
    const stored = await readStocks(redis, expected.keys())
    for (const [stock, model] of expected) {
      assert.deepEqual(stored.get(stock), model.json, `${stock} differs from a clean run`)
      const version = Number(await redis.hget(`bourse:h:${stock}:m`, 'v'))
      assert.equal(version, model.changes, `${stock} had ${version} changes applied, a clean run has ${model.changes}`)
    }
  } finally {
    await redis.quit()
  }
})
