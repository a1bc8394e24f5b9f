/**
 * Fault: Redis lost its data (flushed, or restarted without persistence or from an older
 * save) while the price updater runs or between two runs. The running updater used to
 * retry "applied offset went back" without end; restarted, it resumed from Kafka's
 * committed offsets and skipped every tick before them, or waited for ever. Now a running
 * updater stops with a FatalError saying what to run, a restart is refused, `rebuild`
 * replays the topic exactly, and a Redis that went back to an older consistent state is
 * resumed from its own offsets.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createPriceUpdater, type PriceUpdaterOptions } from '../../src/market/price-updater.consumer.ts'
import { createStockHistoryRepository, offsetsKey } from '../../src/market/stock-history.repository.ts'
import type { Tick } from '../../src/market/tick.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createConsumer, createProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { FatalError } from '../../src/platform/retry.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, uniqueName, waitFor } from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'

const settings = { brokers: kafkaBrokers(testConfig()) }
const log = createLogger({ level: (process.env.TEST_LOG_LEVEL ?? 'silent') as 'silent', pretty: false })
let redis: Redis
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  redis = await openTestRedis()
})
beforeEach(() => redis.flushdb())
after(async () => {
  try {
    for (const cleanup of cleanups.reverse()) await cleanup()
  } finally {
    await closeTestRedis(redis)
  }
})

async function topicWith(partitions: number): Promise<string> {
  const topic = uniqueName('data-loss')
  // Its removal takes the dead-letter topic too, if one was made.
  cleanups.push(await createTestTopic(topic, partitions))
  return topic
}

/** Starts one updater instance; `done` settles with its outcome. */
function startUpdater(topic: string, group: string, options: Partial<PriceUpdaterOptions> = {}) {
  const consumer = createConsumer(settings, group)
  const producer = createProducer(settings)
  const updater = createPriceUpdater(
    { consumer, producer, history: createStockHistoryRepository(redis, { materializeIntervalMs: 0 }), log },
    { topic, group, deadLetterTopic: `${topic}.dead-letter`, idleMs: 200, retryMaxMs: 100, ...options },
  )
  const stop = new AbortController()
  const done = updater.run(AbortSignal.any([stop.signal, AbortSignal.timeout(45_000)])).finally(async () => {
    await consumer.close(true)
    await producer.close()
  })
  done.catch(() => {})
  return { updater, done, stop: () => stop.abort() }
}

const runUntilIdle = (topic: string, group: string, options: Partial<PriceUpdaterOptions> = {}) =>
  startUpdater(topic, group, { untilIdle: true, ...options }).done

const applied = async (group: string, topic: string) =>
  (await redis.hvals(offsetsKey(group, topic))).reduce((sum, o) => sum + Number(o) + 1, 0)

/** Asserts every stock equals a clean run of `ticks`, its JSON and its count of changes. */
async function assertCleanRun(ticks: readonly Tick[]) {
  const expected = applyToModel(new Map(), ticks)
  const stored = await readStocks(redis, expected.keys())
  for (const [stock, model] of expected) {
    assert.deepEqual(stored.get(stock), model.json, `${stock} differs from a clean run`)
    assert.equal(Number(await redis.hget(`bourse:h:${stock}:m`, 'v')), model.changes, `${stock}: changes applied`)
  }
}

const isFatal = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof FatalError, `a FatalError, got ${String(err)}`)
  assert.match(err.message, pattern)
  return true
}

test('a running updater whose Redis is flushed stops with a FatalError naming --rebuild, writing nothing more', async () => {
  const topic = await topicWith(2)
  const ticks = ticksWithCorrections(4000, 10, 3)
  await produceTicks(topic, ticks.slice(0, 2000))
  // No idle check during the test: the apply script itself must see the loss.
  const running = startUpdater(topic, 'g-flush', { idleMs: 60_000, batchSize: 500 })
  await waitFor(async () => (await applied('g-flush', topic)) === 2000, { what: 'the first half applied' })
  await redis.flushdb()
  await produceTicks(topic, ticks.slice(2000))
  await assert.rejects(running.done, isFatal(/Redis holds no applied offset of group g-flush.*lost its data.*--rebuild --until-idle/s))
  assert.deepEqual(await redis.keys('*'), [], 'nothing applied on top of the emptied Redis')
})

test('an idle updater notices the flush at its next idle check and stops', async () => {
  const topic = await topicWith(1)
  await produceTicks(topic, ticksWithCorrections(300, 5, 4))
  const running = startUpdater(topic, 'g-idle')
  await waitFor(async () => (await applied('g-idle', topic)) === 300, { what: 'every tick applied' })
  await redis.flushdb()
  await assert.rejects(running.done, isFatal(/Redis holds no applied offset of group g-idle.*--rebuild/s))
})

test('a restart after the loss is refused, naming --rebuild; --rebuild then rebuilds every history exactly', async () => {
  const topic = await topicWith(3)
  const ticks = ticksWithCorrections(6000, 12, 5)
  await produceTicks(topic, ticks)
  await runUntilIdle(topic, 'g-restart')
  await assertCleanRun(ticks)
  await redis.flushdb()

  await assert.rejects(
    runUntilIdle(topic, 'g-restart'),
    isFatal(/refusing to start: Redis holds no applied offset of group g-restart.*Kafka has the group's committed offsets.*--rebuild --until-idle/s),
  )
  assert.deepEqual(await redis.keys('*'), [], 'nothing applied by the refused start')

  const stats = await runUntilIdle(topic, 'g-restart', { rebuild: true })
  assert.equal(stats.messages, ticks.length)
  await assertCleanRun(ticks)
  assert.equal(await applied('g-restart', topic), ticks.length)
  const again = await runUntilIdle(topic, 'g-restart')
  assert.equal(again.messages, 0, 'after the rebuild, a restart resumes where it ended')
})

test('--rebuild over histories holding part of the ticks ends with the same contract as a clean run', async () => {
  const topic = await topicWith(2)
  const ticks = ticksWithCorrections(3000, 8, 6)
  await produceTicks(topic, ticks)
  await runUntilIdle(topic, 'g-partial', { batchSize: 300 })
  // Redis lost its data, and then got part of the ticks again from elsewhere (a CSV load).
  await redis.flushdb()
  await createStockHistoryRepository(redis).applyTicks(ticks.slice(0, 1000))
  const stats = await runUntilIdle(topic, 'g-partial', { rebuild: true })
  assert.equal(stats.messages, ticks.length, 'every partition replayed from its beginning')
  const expected = applyToModel(new Map(), ticks)
  const stored = await readStocks(redis, expected.keys())
  for (const [stock, model] of expected) assert.deepEqual(stored.get(stock), model.json, stock)
})

test("a Redis that went back to an older consistent state is resumed from its own offsets, not Kafka's", async () => {
  const topic = await topicWith(2)
  const ticks = ticksWithCorrections(4000, 10, 7)
  await produceTicks(topic, ticks.slice(0, 1500))
  await runUntilIdle(topic, 'g-older')
  // The state after the first part, as a restart from an older save would bring it back.
  const keys = await redis.keys('*')
  const saved = await Promise.all(keys.map(async (key) => [key, await redis.dumpBuffer(key)] as const))
  await produceTicks(topic, ticks.slice(1500))
  await runUntilIdle(topic, 'g-older')
  await redis.flushdb()
  for (const [key, value] of saved) await redis.restore(key, 0, value!)

  const stats = await runUntilIdle(topic, 'g-older')
  assert.equal(stats.messages, ticks.length - 1500, 'the ticks after the saved offsets, once')
  await assertCleanRun(ticks)
})

test('a running updater whose Redis went back to an older state stops, saying a restart resumes', async () => {
  const topic = await topicWith(1)
  const ticks = ticksWithCorrections(1000, 5, 8)
  await produceTicks(topic, ticks.slice(0, 500))
  const running = startUpdater(topic, 'g-back', { idleMs: 60_000 })
  await waitFor(async () => (await applied('g-back', topic)) === 500, { what: 'the first part applied' })
  await redis.hset(offsetsKey('g-back', topic), '0', '199')
  await produceTicks(topic, ticks.slice(500))
  await assert.rejects(running.done, isFatal(/went back to 199, below 499.*start the price updater again/s))
})
