/** The batch reader and the dead-letter sender against the real Kafka. */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { kafkaBrokers } from '../../../src/platform/config.ts'
import {
  consumeTopic,
  createBatchReader,
  createConsumer,
  createDeadLetterSender,
  createProducer,
  cutReason,
  deadLetterMessage,
  MAX_REASON_LENGTH,
  type StringMessage,
  type StringProducer,
} from '../../../src/platform/kafka/index.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { RetryAbortedError } from '../../../src/platform/retry.ts'
import { assertDeadLetterHeaders, deadLetters, failingDeadLetterProducer } from '../../helpers/dead-letters.ts'
import { createTestTopic, testConfig, uniqueName } from '../../helpers/infra.ts'

const settings = { brokers: kafkaBrokers(testConfig()) }
const log = createLogger({ level: 'error', pretty: false })
let producer: StringProducer
const cleanups: Array<() => Promise<unknown>> = []

before(() => {
  producer = createProducer(settings)
})
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  await producer.close()
})

async function topicWith(count: number, value: (i: number) => string = (i) => `m${i}`): Promise<string> {
  const topic = uniqueName('consumer')
  cleanups.push(await createTestTopic(topic, 1))
  if (count > 0) await producer.send({ messages: Array.from({ length: count }, (_, i) => ({ topic, key: `k${i}`, value: value(i) })) })
  return topic
}

/** Opens a stream of `topic` for a new group; closes it after the test. */
async function openStream(topic: string) {
  const consumer = createConsumer(settings, uniqueName('reader'), { maxWaitTime: 100 })
  const stream = await consumeTopic(consumer, topic)
  cleanups.push(async () => {
    await stream.close()
    await consumer.close(true)
  })
  return stream
}

describe('batch reader', () => {
  test('batches hold at most maxBatch messages, in offset order, then the reader answers idle', async () => {
    const topic = await topicWith(50)
    const read = createBatchReader(await openStream(topic), { maxBatch: 20, idleMs: 300 })
    const signal = new AbortController().signal
    const seen: StringMessage[] = []
    for (;;) {
      const batch = await read(signal)
      if (batch === 'idle') break
      assert.ok(Array.isArray(batch), `a batch, not ${String(batch)}`)
      assert.ok(batch.length >= 1 && batch.length <= 20, `batch of ${batch.length}`)
      seen.push(...batch)
    }
    assert.deepEqual(
      seen.map((m) => m.offset),
      Array.from({ length: 50 }, (_, i) => BigInt(i)),
    )
  })

  test('decode runs once per message and weight fills a batch; a limit lowers one call', async () => {
    const topic = await topicWith(30, (i) => String((i % 3) + 1))
    let decoded = 0
    const read = createBatchReader(await openStream(topic), {
      maxBatch: 10,
      idleMs: 2000,
      lingerMs: 1000,
      decode: (message) => {
        decoded++
        return Number(message.value)
      },
      weight: (n) => n,
    })
    const signal = new AbortController().signal
    const limited = await read(signal, 1)
    assert.deepEqual(limited, [1], 'the limit of one call')
    const weights: number[] = []
    let items = 1
    while (items < 30) {
      const batch = await read(signal)
      assert.ok(Array.isArray(batch))
      const weight = batch.reduce((sum, n) => sum + n, 0)
      // A batch ends once it holds 10 or more (the last item may carry it over).
      assert.ok(weight - batch.at(-1)! < 10, `batch weight ${weight}`)
      weights.push(weight)
      items += batch.length
    }
    assert.equal(decoded, 30)
    assert.ok(weights.slice(0, -1).every((w) => w >= 10), `full batches before the last: ${weights.join(', ')}`)
  })

  test('an abort ends a wait with stopped', async () => {
    const topic = await topicWith(0)
    const read = createBatchReader(await openStream(topic), { maxBatch: 10 })
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 200)
    assert.equal(await read(controller.signal), 'stopped')
  })
})

describe('dead letters', () => {
  const source = { topic: 'orders', partition: 2, offset: 41n, key: 'k', value: 'v' }

  test('headers: reason (cut to 1,000 characters), source topic, partition and offset; key and value kept', () => {
    const message = deadLetterMessage('orders.dead-letter', { message: source, reason: 'bad' })
    assert.deepEqual(message, {
      topic: 'orders.dead-letter',
      key: 'k',
      value: 'v',
      headers: {
        'bourse-error': 'bad',
        'bourse-source-topic': 'orders',
        'bourse-source-partition': '2',
        'bourse-source-offset': '41',
      },
    })
    const huge = deadLetterMessage('d', { message: source, reason: 'x'.repeat(100_000), key: 'other', value: 'one event' })
    const reason = (huge.headers as Record<string, string>)['bourse-error']!
    assert.equal(reason.length, MAX_REASON_LENGTH)
    assert.ok(reason.endsWith('…'))
    assert.deepEqual([huge.key, huge.value], ['other', 'one event'])
    assert.equal(cutReason('short'), 'short')
  })

  test('a failed send is retried until it goes through, once', async () => {
    const topic = await topicWith(0)
    const deadLetterTopic = `${topic}.dead-letter`
    cleanups.push(await createTestTopic(deadLetterTopic, 1))
    const failing = failingDeadLetterProducer(producer, deadLetterTopic, 2)
    const retried: unknown[] = []
    const send = createDeadLetterSender(
      { producer: failing.producer, log, onRetry: (err) => retried.push(err) },
      { topic: deadLetterTopic, retryBaseMs: 5, retryMaxMs: 20 },
    )
    await send([{ message: { ...source, topic }, reason: 'refused' }])
    assert.equal(failing.failed(), 2)
    assert.equal(retried.length, 2)
    const dead = await deadLetters(deadLetterTopic)
    assert.equal(dead.length, 1)
    assertDeadLetterHeaders(dead[0]!, { topic, partition: 2, offset: 41n }, /^refused$/)
  })

  test('an abort ends the retries with a RetryAbortedError', async () => {
    const failing = failingDeadLetterProducer(producer, 'nowhere', Number.POSITIVE_INFINITY)
    const send = createDeadLetterSender({ producer: failing.producer, log }, { topic: 'nowhere', retryBaseMs: 5, retryMaxMs: 20 })
    const controller = new AbortController()
    const sending = send([{ message: source, reason: 'refused' }], controller.signal)
    setTimeout(() => controller.abort(), 100)
    await assert.rejects(sending, RetryAbortedError)
    assert.ok(failing.failed() >= 2)
  })
})
