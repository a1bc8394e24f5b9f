/**
 * Hardening: a message with a huge key stalled its producer. @platformatic/kafka's murmur2
 * multiplies BigInts it never cuts to 32 bits, so hashing a key costs the square of its
 * length (a 300 KB key took 49 s); a hostile message on the market topic made the
 * updater's dead-letter sender, which keeps the key, stall for minutes. Bourse's
 * producers use a linear murmur2 that puts every key on the same partition as before.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { murmur2 as libraryMurmur2 } from '@platformatic/kafka'
import fc from 'fast-check'
import { createProducer } from '../../../src/platform/kafka/clients.ts'
import { createKeyPartitioner, murmur2 } from '../../../src/platform/kafka/partitioner.ts'
import { kafkaBrokers } from '../../../src/platform/config.ts'
import { createTestTopic, testConfig, uniqueName } from '../../helpers/infra.ts'
import { readTopic } from '../../helpers/topic-reader.ts'

test('murmur2 equals the Kafka client hash for every key (so no key changes partition)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const key = Buffer.from(bytes)
      assert.equal(murmur2(key), libraryMurmur2(key))
    }),
    { numRuns: 5000 },
  )
  // Kafka's own reference values (the Java client's test of Utils.murmur2).
  assert.equal(murmur2(Buffer.from('21')), -973932308)
  assert.equal(murmur2(Buffer.from('foobar')), -790332482)
  assert.equal(murmur2(Buffer.from('a-little-bit-long-string')), -985981536)
  assert.equal(murmur2(Buffer.from('a-little-bit-longer-string')), -1486304829)
  assert.equal(murmur2(Buffer.from('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8')), -58897971)
})

test('keyless messages go round-robin per topic; keyed ones by their hash', () => {
  const partitioner = createKeyPartitioner<string, string, string, string>()
  const context = { metadata: undefined }
  const turns = [0, 1, 2].map(() => partitioner({ topic: 'a', value: 'x' }, undefined, context))
  assert.deepEqual(turns, [0, 1, 2])
  assert.equal(partitioner({ topic: 'b', value: 'x' }, undefined, context), 0)
  const key = Buffer.from('stock1')
  assert.equal(partitioner({ topic: 'a', key: 'stock1', value: 'x' }, key, context), libraryMurmur2(key) >>> 0)
})

test('a producer sends a message with a 900 KB key without stalling, to the partition of its hash', async () => {
  const topic = uniqueName('huge-key')
  const drop = await createTestTopic(topic, 3)
  const producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
  try {
    const hugeKey = 'k'.repeat(900 * 1024)
    // The library's hash of this key takes many minutes; the test's timeout is far shorter.
    await producer.send({ messages: [{ topic, key: hugeKey, value: 'v' }] })
    const partitions = await readTopic(topic)
    const expected = (murmur2(Buffer.from(hugeKey)) >>> 0) % 3
    assert.deepEqual(
      partitions.map((records) => records.length),
      [0, 1, 2].map((p) => (p === expected ? 1 : 0)),
    )
    assert.equal(partitions[expected]?.[0]?.key?.length, hugeKey.length)
  } finally {
    await producer.close()
    await drop()
  }
})
