/**
 * Fault: the Redis holding the contract loses its data (FLUSHALL here; a restart without
 * persistence is the same) while the real price-updater process ingests. The updater
 * must stop with exit 65 and a message saying what happened and what to run, instead of
 * retrying for ever; a restart must be refused, instead of resuming from Kafka's committed
 * offsets and skipping every tick before them; `--rebuild` must then rebuild every history
 * exactly as a clean run.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Redis } from 'ioredis'
import { offsetsKey } from '../../src/market/stock-history.repository.ts'
import { REPORTS_STREAM } from '../../src/platform/reports.ts'
import { createTestTopic, runCli, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'
import { type OwnRedis, startOwnRedis } from '../helpers/own-redis.ts'
import { startService } from '../helpers/processes.ts'

const TICKS = 20_000
const topic = uniqueName('fault-redis-loss')
const group = 'fault-redis-loss'
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

const applied = async () => (await redis.hvals(offsetsKey(group, topic))).reduce((sum, o) => sum + Number(o) + 1, 0)
/** Every key the updater writes (the heartbeat aside). */
/** The keys of the data, without the service shape's own: heartbeats and the reports stream. */
const contractKeys = async () =>
  (await redis.keys('*')).filter((key) => !key.startsWith('bourse:heartbeat:') && key !== REPORTS_STREAM).sort()

test('Redis flushed during an ingest: the updater stops with exit 65 naming --rebuild, a restart is refused, --rebuild rebuilds exactly', async (t) => {
  const ticks = ticksWithCorrections(TICKS, 20, 21)
  await produceTicks(topic, ticks)
  const expected = applyToModel(new Map(), ticks)
  const env = testEnv({ REDIS_URL: own.url, MATERIALIZE_INTERVAL_MS: '100' })
  const args = ['price-updater', '--topic', topic, '--group', group, '--batch-size', '500', '--idle-ms', '300']
  const rebuild = `bourse price-updater --topic ${topic} --group ${group} --rebuild --until-idle`

  const updater = startService(args, env)
  t.after(() => updater.kill())
  await waitFor(async () => (await applied()) >= TICKS * 0.3, { timeoutMs: 60_000, intervalMs: 20, what: '30% applied' })
  await redis.flushall()
  const exited = await waitFor(() => updater.child.exitCode ?? undefined, { timeoutMs: 20_000, what: 'the updater to stop' })
  assert.equal(exited, 65, updater.output())
  assert.match(updater.output(), /Redis holds no applied offset of group fault-redis-loss.*lost its data/s)
  assert.ok(updater.output().includes(rebuild), updater.output())
  assert.deepEqual(await contractKeys(), [], 'nothing applied on top of the emptied Redis')
  // What it did write is its report of the failure, for operators.
  const reports = (await redis.xrange(REPORTS_STREAM, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as { service: string; status: string; level: string })
  assert.ok(reports.some((r) => r.service === 'price-updater' && r.level === 'error'), JSON.stringify(reports))

  const refused = await runCli([...args, '--until-idle'], env)
  assert.equal(refused.code, 65, refused.stderr)
  assert.match(refused.stderr, /refusing to start: Redis holds no applied offset of group fault-redis-loss/)
  assert.ok(refused.stderr.includes(rebuild), refused.stderr)
  assert.deepEqual(await contractKeys(), [], 'nothing applied by the refused start')

  const rebuilt = await runCli([...args, '--rebuild', '--until-idle'], env)
  assert.equal(rebuilt.code, 0, rebuilt.stderr)
  assert.match(rebuilt.stdout, new RegExp(`applied ${TICKS} messages`))
  assert.equal(await applied(), TICKS)
  const stored = await readStocks(redis, expected.keys())
  for (const [stock, model] of expected) {
    assert.deepEqual(stored.get(stock), model.json, `${stock} differs from a clean run`)
    assert.equal(Number(await redis.hget(`bourse:h:${stock}:m`, 'v')), model.changes, `${stock}: changes applied`)
  }

  const resumed = await runCli([...args, '--until-idle'], env)
  assert.equal(resumed.code, 0, resumed.stderr)
  assert.match(resumed.stdout, /applied 0 messages/, 'after the rebuild the updater starts as usual, where it ended')
})
