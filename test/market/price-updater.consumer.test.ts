/** The price updater against the real Kafka and Redis. */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { MessagesStreamModes } from '@platformatic/kafka'
import type { Redis } from 'ioredis'
import { createPriceUpdater } from '../../src/market/price-updater.consumer.ts'
import { readRedisFixture } from '../../src/market/redis-fixture.ts'
import { createStockHistoryRepository } from '../../src/market/stock-history.repository.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { partitionForKey } from '../../src/platform/kafka/partitions.ts'
import { createConsumer, createProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { Registry } from 'prom-client'
import { assertDeadLetterHeaders, deadLetters, failingDeadLetterProducer } from '../helpers/dead-letters.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, uniqueName, waitFor } from '../helpers/infra.ts'
import { applyToModel, type ModelStock, originalFixtures, produceTicks, readStocks, readTicks } from '../helpers/market.ts'

const settings = { brokers: kafkaBrokers(testConfig()) }
const log = createLogger({ level: 'warn', pretty: false })
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
  const topic = uniqueName('updater')
  cleanups.push(await createTestTopic(topic, partitions))
  cleanups.push(await createTestTopic(`${topic}.dead-letter`, 1))
  return topic
}

/** Runs one updater instance until it has caught up. */
async function runUpdater(topic: string, group: string, options: { batchSize?: number } = {}) {
  const consumer = createConsumer(settings, group)
  const producer = createProducer(settings)
  try {
    const updater = createPriceUpdater(
      { consumer, producer, history: createStockHistoryRepository(redis, { materializeIntervalMs: 50 }), log },
      { topic, group, deadLetterTopic: `${topic}.dead-letter`, untilIdle: true, idleMs: 300, ...options },
    )
    return await updater.run(new AbortController().signal)
  } finally {
    await consumer.close(true)
    await producer.close()
  }
}

test('original fixture and CSV through Kafka give each stock its fixture entries then its rows in file order', async () => {
  const topic = await topicWith(3)
  const fixture = await readRedisFixture(originalFixtures.redis)
  const history = createStockHistoryRepository(redis)
  const model = new Map<string, ModelStock>()
  for (const entry of fixture.entries) {
    if (entry.kind === 'stock') {
      await history.seedStock(entry.key, entry.value)
      model.set(entry.key, { json: structuredClone(entry.value) as ModelStock['json'], changes: 0 })
    }
  }
  const ticks = readTicks(originalFixtures.prices)
  await produceTicks(topic, ticks)
  const stats = await runUpdater(topic, 'g1')
  assert.equal(stats.messages, 510)
  assert.equal(stats.appended, 510)
  applyToModel(model, ticks)
  const stored = await readStocks(redis, model.keys())
  for (const [stock, expected] of model) assert.deepEqual(stored.get(stock), expected.json)

  const again = await runUpdater(topic, 'g1')
  assert.equal(again.messages, 0, 'a restarted group starts after what it applied')
})

test('poison messages go to the dead-letter topic with the reason and the rest is applied', async () => {
  const topic = await topicWith(1)
  const producer = createProducer(settings)
  await producer.send({
    messages: [
      { topic, key: 'stock1', value: JSON.stringify({ time: '090000', stock: 'stock1', price: 1 }) },
      { topic, key: 'stock1', value: '{not json' },
      { topic, key: 'stock1', value: JSON.stringify({ time: '25:00', stock: 'stock1', price: 1 }) },
      { topic, key: 'stock1', value: JSON.stringify({ time: '090001', stock: 'stock1', price: 'abc' }) },
      { topic, key: 'stock2', value: JSON.stringify({ time: '090001', stock: 'stock1', price: 1 }) },
      { topic, key: 'stock1', value: JSON.stringify({ time: '090002', stock: 'stock1', price: null }) },
    ],
  })
  await producer.close()
  const stats = await runUpdater(topic, 'g2')
  assert.equal(stats.deadLettered, 4)
  assert.deepEqual(JSON.parse((await redis.get('stock1')) ?? ''), {
    performance: 0,
    time: ['090000', '090002'],
    price: [1, ''],
  })
  assert.equal(await redis.exists('stock2'), 0)

  const consumer = createConsumer(settings, uniqueName('dlq-reader'))
  const stream = await consumer.consume({ topics: [`${topic}.dead-letter`], mode: MessagesStreamModes.EARLIEST })
  const reasons: string[] = []
  for await (const message of stream) {
    reasons.push(String(message.headers.get('bourse-error')))
    assert.equal(message.headers.get('bourse-source-topic'), topic)
    if (reasons.length === 4) break
  }
  await stream.close()
  await consumer.close(true)
  assert.match(reasons[0]!, /not JSON/)
  assert.match(reasons[1]!, /hhmmss/)
  assert.match(reasons[2]!, /price/)
  assert.match(reasons[3]!, /does not match/)
})

/** Starts one updater instance that runs until stopped; its consumer is exposed for its assignments. */
function startUpdater(topic: string, group: string, options: { batchSize?: number } = {}) {
  const consumer = createConsumer(settings, group)
  const producer = createProducer(settings)
  const stop = new AbortController()
  const updater = createPriceUpdater(
    { consumer, producer, history: createStockHistoryRepository(redis, { materializeIntervalMs: 50 }), log },
    { topic, group, deadLetterTopic: `${topic}.dead-letter`, idleMs: 100, ...options },
  )
  const done = updater.run(stop.signal).finally(async () => {
    await consumer.close(true)
    await producer.close()
  })
  return { consumer, done, stop: () => stop.abort() }
}

test('two instances in one group share the partitions and apply every tick once', async () => {
  const topic = await topicWith(3)
  const ticks = Array.from({ length: 60_000 }, (_, i) => ({
    stock: `stock${(i % 12) + 1}`,
    time: String(Math.floor(i / 12)).padStart(6, '0').replace(/^(\d\d)(\d\d)(\d\d)$/, (_m, h, m, s) =>
      [Number(h) % 24, Number(m) % 60, Number(s) % 60].map((n) => String(n).padStart(2, '0')).join(''),
    ),
    price: i,
  }))
  const perPartition = new Map<number, number>()
  for (const tick of ticks) {
    const partition = partitionForKey(tick.stock, 3)
    perPartition.set(partition, (perPartition.get(partition) ?? 0) + 1)
  }
  assert.equal(perPartition.size, 3, 'the ticks reach every partition')
  // Both instances join before any tick exists, so the group's assignment gives each of
  // them partitions with ticks to apply, however fast the other one is.
  const a = startUpdater(topic, 'g3', { batchSize: 300 })
  const b = startUpdater(topic, 'g3', { batchSize: 300 })
  await waitFor(
    () => {
      const [ofA, ofB] = [a.consumer.assignments, b.consumer.assignments]
      const held = (assigned: typeof ofA) => assigned?.reduce((n, { partitions }) => n + partitions.length, 0) ?? 0
      return held(ofA) > 0 && held(ofB) > 0 && held(ofA) + held(ofB) === 3
    },
    { what: 'both instances to hold partitions' },
  )
  await produceTicks(topic, ticks)
  const history = createStockHistoryRepository(redis)
  await waitFor(
    async () => {
      const applied = await history.appliedOffsets('g3', topic)
      return [...perPartition].every(([partition, count]) => applied.get(partition) === BigInt(count - 1))
    },
    { what: 'every tick applied' },
  )
  a.stop()
  b.stop()
  const [ofA, ofB] = await Promise.all([a.done, b.done])
  assert.ok(ofA.messages > 0 && ofB.messages > 0, `both instances consumed (${ofA.messages}, ${ofB.messages})`)
  assert.equal(ofA.messages + ofB.messages - ofA.replayed - ofB.replayed, ticks.length)
  const model = applyToModel(new Map(), ticks)
  const stored = await readStocks(redis, model.keys())
  for (const [stock, expected] of model) {
    assert.deepEqual(stored.get(stock), expected.json)
    assert.equal(Number(await redis.hget(`bourse:h:${stock}:m`, 'v')), expected.changes)
  }
})

test('a failed dead-letter send is retried, not fatal: the poison lands once with its headers, later ticks are applied', async () => {
  const topic = await topicWith(1)
  const deadLetterTopic = `${topic}.dead-letter`
  const producer = createProducer(settings)
  await producer.send({
    messages: [
      { topic, key: 'stock1', value: JSON.stringify({ time: '090000', stock: 'stock1', price: 1 }) },
      { topic, key: 'stock1', value: '{not json' },
      { topic, key: 'stock1', value: JSON.stringify({ time: '090001', stock: 'stock1', price: 2 }) },
    ],
  })
  await producer.close()
  const consumer = createConsumer(settings, 'g4')
  const failing = failingDeadLetterProducer(createProducer(settings), deadLetterTopic, 2)
  const metrics = new Registry()
  try {
    const updater = createPriceUpdater(
      { consumer, producer: failing.producer, history: createStockHistoryRepository(redis, { materializeIntervalMs: 50 }), log, metrics },
      { topic, group: 'g4', deadLetterTopic, untilIdle: true, idleMs: 300, retryBaseMs: 10, retryMaxMs: 50 },
    )
    const stats = await updater.run(new AbortController().signal)
    assert.equal(failing.failed(), 2, 'two sends failed before one went through')
    assert.equal(stats.deadLettered, 1)
    assert.equal(stats.messages, 3)
  } finally {
    await consumer.close(true)
    await failing.producer.close()
  }
  assert.deepEqual(JSON.parse((await redis.get('stock1')) ?? ''), { performance: 0, time: ['090000', '090001'], price: [1, 2] })
  const dead = await deadLetters(deadLetterTopic)
  assert.equal(dead.length, 1, 'dead-lettered exactly once')
  assertDeadLetterHeaders(dead[0]!, { topic, partition: 0, offset: 1n }, /not JSON/)
  assert.deepEqual([dead[0]!.key, dead[0]!.value], ['stock1', '{not json'])

  const value = async (name: string) => (await metrics.getSingleMetric(name)!.get()).values.find((v) => v.labels.topic === topic)?.value
  assert.equal(await value('bourse_consumer_messages_total'), 3)
  assert.equal(await value('bourse_consumer_dead_letters_total'), 1)
  assert.equal(await value('bourse_consumer_retries_total'), 2)
  assert.ok(((await value('bourse_consumer_batches_total')) ?? 0) >= 1)
  assert.equal(await value('bourse_consumer_in_flight'), 0)
})
