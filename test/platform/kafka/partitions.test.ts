import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { kafkaBrokers } from '../../../src/platform/config.ts'
import { createProducer, type StringConsumer, type StringProducer } from '../../../src/platform/kafka/clients.ts'
import { partitionForKey, readPartitionRange } from '../../../src/platform/kafka/partitions.ts'
import { createTestTopic, testConfig, uniqueName } from '../../helpers/infra.ts'
import { createReaderConsumer, readTopic } from '../../helpers/topic-reader.ts'

describe('kafka partitions', () => {
  const topic = uniqueName('kafka-partitions')
  let drop: () => Promise<void>
  let producer: StringProducer
  let consumer: StringConsumer

  before(async () => {
    drop = await createTestTopic(topic, 5)
    producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
    consumer = createReaderConsumer()
  })
  after(async () => {
    await Promise.all([producer.close(), consumer.close()])
    await drop()
  })

  it('computes the partition the producer picks for a key when none is given', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `stock${i + 1}`)
    // Keys sent without a partition, one per message, so each one's partition shows in the topic.
    await producer.send({ messages: keys.map((key) => ({ topic, key, value: key })) })
    const partitions = await readTopic(topic, consumer)
    const placed = new Map(partitions.flatMap((records, p) => records.map((r) => [r.key, p] as const)))
    assert.equal(placed.size, 200)
    for (const key of keys) assert.equal(partitionForKey(key, 5), placed.get(key), key)
    // Keys spread over all partitions.
    assert.ok(partitions.every((records) => records.length > 10))
  })

  it('reads exactly an offset range, with headers, across several fetches', async () => {
    const messages = Array.from({ length: 3000 }, (_, i) => ({
      topic,
      key: 'k',
      value: `v${i}`,
      partition: 4,
      headers: { n: String(i), other: 'x' },
    }))
    // Thirty sends make thirty record batches: a fetch returns whole batches up to maxBytes.
    let base: bigint | undefined
    for (let i = 0; i < messages.length; i += 100) {
      const sent = await producer.send({ messages: messages.slice(i, i + 100) })
      base ??= sent.offsets?.find((o) => o.partition === 4)?.offset ?? 0n
    }
    if (base === undefined) assert.fail('nothing sent')
    const chunks: number[] = []
    const values: string[] = []
    for await (const records of readPartitionRange(consumer, topic, 4, base + 10n, base + 2990n, {
      maxBytes: 16_384,
    })) {
      chunks.push(records.length)
      for (const record of records) {
        assert.equal(record.value, `v${record.offset - base}`)
        assert.equal(record.headers.get('n'), String(record.offset - base))
        values.push(record.value ?? '')
      }
    }
    assert.equal(values.length, 2980)
    assert.equal(values[0], 'v10')
    assert.equal(values.at(-1), 'v2989')
    assert.ok(chunks.length > 1, 'a small maxBytes takes several fetches')
  })
})
