/**
 * Fault: a stock name whose Redis key holds a list or a hash. The batch script used to
 * fail halfway with WRONGTYPE after writing the batch's other stocks (Redis does not roll
 * a script back), and the price updater retried it without end. Every key is now checked
 * before the first write: a foreign stock key is quarantined, a foreign value in one of
 * Bourse's own keys refuses the whole batch with an error that is not retried.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createPriceUpdater } from '../../src/market/price-updater.consumer.ts'
import {
  createStockHistoryRepository,
  HistoryKeyTypeError,
  offsetsKey,
  type StockHistoryRepository,
} from '../../src/market/stock-history.repository.ts'
import type { Tick } from '../../src/market/tick.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createConsumer, createProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { FatalError } from '../../src/platform/retry.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, uniqueName } from '../helpers/infra.ts'
import { produceTicks } from '../helpers/market.ts'

let redis: Redis
let history: StockHistoryRepository
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  redis = await openTestRedis()
  history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
})
beforeEach(() => redis.flushdb())
after(async () => {
  try {
    for (const cleanup of cleanups.reverse()) await cleanup()
  } finally {
    await closeTestRedis(redis)
  }
})

const get = async (key: string) => JSON.parse((await redis.get(key)) ?? 'null') as unknown
const batch: Tick[] = [
  { stock: 'stock1', time: '090000', price: 10 },
  { stock: 'foreignlist', time: '090000', price: 20 },
  { stock: 'foreignhash', time: '090001', price: 30 },
  { stock: 'stock2', time: '090002', price: 40 },
]

test('a stock key holding a list or a hash is quarantined and the whole batch is applied', async () => {
  await redis.rpush('foreignlist', 'a')
  await redis.hset('foreignhash', 'f', 'v')
  const result = await history.applyTicks(batch)
  assert.equal(result.appended, 4)
  assert.equal(result.quarantined, 2)
  assert.deepEqual(await redis.lrange('bourse:quarantine:foreignlist', 0, -1), ['a'])
  assert.deepEqual(await redis.hgetall('bourse:quarantine:foreignhash'), { f: 'v' })
  assert.deepEqual(await get('stock1'), { performance: 0, time: ['090000'], price: [10] })
  assert.deepEqual(await get('foreignlist'), { performance: 0, time: ['090000'], price: [20] })
  assert.deepEqual(await get('foreignhash'), { performance: 0, time: ['090001'], price: [30] })
  assert.deepEqual(await get('stock2'), { performance: 0, time: ['090002'], price: [40] })
})

test('a stock that has a history and whose key was replaced by a list keeps its history; the list is quarantined', async () => {
  await history.applyTicks([{ stock: 'foreignlist', time: '085959', price: 1 }])
  await redis.del('foreignlist')
  await redis.rpush('foreignlist', 'a')
  const result = await history.applyTicks(batch)
  assert.equal(result.quarantined, 1)
  assert.deepEqual(await redis.lrange('bourse:quarantine:foreignlist', 0, -1), ['a'])
  assert.deepEqual(await get('foreignlist'), { performance: 0, time: ['085959', '090000'], price: [1, 20] })
})

test("one of Bourse's own keys of the wrong type refuses the whole batch before anything is written", async () => {
  await redis.rpush('bourse:h:stock2:m', 'x')
  await assert.rejects(history.applyTicks(batch), (err) => {
    assert.ok(err instanceof HistoryKeyTypeError && err instanceof FatalError, String(err))
    assert.match(err.message, /bourse:h:stock2:m holds a list, not a hash/)
    return true
  })
  assert.equal(await redis.exists('stock1', 'foreignlist', 'bourse:h:stock1:t', 'bourse:stocks'), 0, 'nothing written')
})

test('an offsets record of the wrong type refuses the batch as fatal (it used to be a WRONGTYPE retried for ever)', async () => {
  await redis.set(offsetsKey('g-typed', 'typed-topic'), 'not a hash')
  const ticks = batch.map((tick, i) => ({ ...tick, source: { partition: 0, offset: BigInt(i) } }))
  await assert.rejects(history.applyTicks(ticks, { group: 'g-typed', topic: 'typed-topic' }), (err) => {
    assert.ok(err instanceof HistoryKeyTypeError && err instanceof FatalError, String(err))
    assert.match(err.message, /holds a string, not a hash/)
    return true
  })
  assert.equal(await redis.exists('stock1', 'bourse:stocks'), 0, 'nothing written')
})

test('through Kafka: a tick for a list-typed stock key is applied after quarantine, no retry without end', async () => {
  const topic = uniqueName('foreign-key')
  cleanups.push(await createTestTopic(topic, 1))
  await redis.rpush('foreignlist', 'a')
  await produceTicks(topic, batch)
  const settings = { brokers: kafkaBrokers(testConfig()) }
  const consumer = createConsumer(settings, 'g-foreign')
  const producer = createProducer(settings)
  try {
    const updater = createPriceUpdater(
      { consumer, producer, history, log: createLogger({ level: 'silent', pretty: false }) },
      { topic, group: 'g-foreign', deadLetterTopic: `${topic}.dead-letter`, untilIdle: true, idleMs: 300, retryMaxMs: 50 },
    )
    const stats = await updater.run(AbortSignal.timeout(30_000))
    assert.equal(stats.appended, 4)
  } finally {
    await consumer.close(true)
    await producer.close()
  }
  assert.deepEqual(await get('foreignlist'), { performance: 0, time: ['090000'], price: [20] })
  assert.deepEqual(await redis.hgetall(offsetsKey('g-foreign', topic)), { 0: '3' })
})
