/**
 * A huge bad Kafka message: its dead letter's `bourse-error` header and the warning
 * logged for it quote a cut piece of the bad input, so the reason stays short and still
 * says, whole, what is wrong (before, the reason quoted the whole input and was then cut
 * after 1,000 characters, in the middle of the quote).
 */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createPriceUpdater } from '../../../src/market/price-updater.consumer.ts'
import { createStockHistoryRepository } from '../../../src/market/stock-history.repository.ts'
import { kafkaBrokers } from '../../../src/platform/config.ts'
import { createConsumer, createProducer } from '../../../src/platform/kafka/clients.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { decodeEventMessage } from '../../../src/events/event-message.ts'
import { decodeOrderMessage } from '../../../src/trading/order-message.ts'
import { deadLetters } from '../../helpers/dead-letters.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, uniqueName } from '../../helpers/infra.ts'

const settings = { brokers: kafkaBrokers(testConfig()) }
// Each message and the two dead letters together stay under the broker's 1 MB request limit.
const HUGE = 300_000
// A huge key as well (partitioner.huge-key.test.ts shows its hash no longer stalls a
// producer); the batch's messages and dead letters stay under the 1 MB request limit.
const LONG_KEY = 200_000
let redis: Redis
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  redis = await openTestRedis()
})
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  await closeTestRedis(redis)
})

test('a huge bad tick is dead-lettered whole, with a short and complete reason, and logged in a short line', async () => {
  const topic = uniqueName('huge-message')
  cleanups.push(await createTestTopic(topic, 1))
  cleanups.push(await createTestTopic(`${topic}.dead-letter`, 1))
  const hugeStock = `s${'x'.repeat(HUGE)}`
  const hugeKey = 'k'.repeat(LONG_KEY)
  const producer = createProducer(settings)
  try {
    const messages = [
      { topic, key: 'stock1', value: JSON.stringify({ time: '090000', stock: hugeStock, price: 1 }) },
      { topic, key: hugeKey, value: JSON.stringify({ time: '090001', stock: 'stock1', price: 2 }) },
      { topic, key: 'stock1', value: JSON.stringify({ time: '090002', stock: 'stock1', price: 3 }) },
    ]
    for (const message of messages) await producer.send({ messages: [message] })
  } finally {
    await producer.close()
  }

  const logged: string[] = []
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''))
      done()
    },
  })
  const log = createLogger({ level: 'warn', pretty: false, destination })
  const consumer = createConsumer(settings, 'g-huge')
  const updaterProducer = createProducer(settings)
  try {
    const updater = createPriceUpdater(
      { consumer, producer: updaterProducer, history: createStockHistoryRepository(redis, { materializeIntervalMs: 0 }), log },
      { topic, group: 'g-huge', deadLetterTopic: `${topic}.dead-letter`, untilIdle: true, idleMs: 300 },
    )
    const stats = await updater.run(new AbortController().signal)
    assert.equal(stats.deadLettered, 2)
  } finally {
    await consumer.close(true)
    await updaterProducer.close()
  }
  assert.deepEqual(JSON.parse((await redis.get('stock1'))!), { performance: 0, time: ['090002'], price: [3] })

  const letters = await deadLetters(`${topic}.dead-letter`)
  assert.equal(letters.length, 2)
  const reasons = letters.map((letter) => letter.headers.get('bourse-error') ?? '')
  const expected = [
    new RegExp(`^stock "sx{99}"… \\(${HUGE + 1} characters\\) must be a letter followed by up to 63 letters, digits, "_" or "-"$`),
    new RegExp(`^key "k{100}"… \\(${LONG_KEY} characters\\) does not match stock "stock1"$`),
  ]
  reasons.forEach((reason, i) => {
    assert.ok(reason.length < 300, `reason ${i} has ${reason.length} characters`)
    assert.match(reason, expected[i]!)
  })
  // The dead letter keeps the message as it was, whole.
  assert.equal(letters[0]!.value?.length, JSON.stringify({ time: '090000', stock: hugeStock, price: 1 }).length)
  assert.equal(letters[1]!.key, hugeKey)

  const warnings = logged.filter((line) => line.includes('dead-lettered message'))
  assert.equal(warnings.length, 2, logged.join('\n').slice(0, 2000))
  for (const line of logged) assert.ok(line.length < 1000, `a log line has ${line.length} characters`)
  warnings.forEach((line, i) => assert.match((JSON.parse(line) as { reason: string }).reason, expected[i]!))
})

test('the order and event decoders give short reasons for huge messages too', () => {
  const huge = 'z'.repeat(HUGE)
  const reasons = [
    () => decodeOrderMessage(huge),
    () => decodeOrderMessage(JSON.stringify({ v: 1, id: huge })),
    () => decodeOrderMessage(JSON.stringify({ [huge]: 1 })),
    () => decodeEventMessage(huge),
    () => decodeEventMessage(`{"v":2,"app_id":"${huge}`),
  ].map((decode) => {
    try {
      decode()
    } catch (err) {
      return (err as Error).message
    }
    return assert.fail('decoded')
  })
  for (const reason of reasons) assert.ok(reason.length < 300, `${reason.length} characters: ${reason.slice(0, 300)}`)
})
