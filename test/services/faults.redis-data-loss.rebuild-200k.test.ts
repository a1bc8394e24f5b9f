/**
 * Fault: Redis lost its data after a 200,000-tick ingest (a restart without persistence;
 * FLUSHALL here). A restart is refused; `--rebuild` replays the topic from the beginning
 * of every partition, and every history must then equal the clean run's exactly: the
 * contract JSON and the count of changes.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Redis } from 'ioredis'
import { offsetsKey } from '../../src/market/stock-history.repository.ts'
import { createTestTopic, runCli, testEnv, uniqueName } from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'
import { type OwnRedis, startOwnRedis } from '../helpers/own-redis.ts'

const TICKS = 200_000
const topic = uniqueName('fault-rebuild')
const group = 'fault-rebuild'
let own: OwnRedis
let redis: Redis
let dropTopic: () => Promise<void>

before(async () => {
  own = await startOwnRedis()
  redis = new Redis(own.url)
  dropTopic = await createTestTopic(topic, 3)
})
after(async () => {
  try {
    redis.disconnect()
    await dropTopic()
  } finally {
    await own.destroy()
  }
})

/** Every stock's contract JSON and count of changes. */
async function snapshot(stocks: Iterable<string>) {
  const json = await readStocks(redis, stocks)
  const changes = new Map<string, number>()
  for (const stock of json.keys()) changes.set(stock, Number(await redis.hget(`bourse:h:${stock}:m`, 'v')))
  return { json, changes }
}

test(`--rebuild after Redis lost a ${TICKS}-tick ingest gives every history exactly as the clean run`, async (t) => {
  const ticks = ticksWithCorrections(TICKS, 200, 31)
  await produceTicks(topic, ticks)
  const expected = applyToModel(new Map(), ticks)
  const env = testEnv({ REDIS_URL: own.url })
  const args = ['price-updater', '--topic', topic, '--group', group, '--idle-ms', '300', '--until-idle']

  let started = Date.now()
  const clean = await runCli(args, env)
  assert.equal(clean.code, 0, clean.stderr)
  const cleanMs = Date.now() - started
  const cleanRun = await snapshot(expected.keys())
  for (const [stock, model] of expected) assert.deepEqual(cleanRun.json.get(stock), model.json, `clean run: ${stock}`)

  await redis.flushall()
  const refused = await runCli(args, env)
  assert.equal(refused.code, 65, refused.stderr)
  assert.match(refused.stderr, /refusing to start/)

  started = Date.now()
  const rebuilt = await runCli([...args, '--rebuild'], env)
  assert.equal(rebuilt.code, 0, rebuilt.stderr)
  const rebuildMs = Date.now() - started
  t.diagnostic(`clean run ${cleanMs} ms, rebuild ${rebuildMs} ms for ${TICKS} ticks`)
  assert.match(rebuilt.stdout, new RegExp(`applied ${TICKS} messages`))
  const offsets = await redis.hvals(offsetsKey(group, topic))
  assert.equal(offsets.reduce((sum, o) => sum + Number(o) + 1, 0), TICKS)
  assert.deepEqual(await snapshot(expected.keys()), cleanRun)
})
