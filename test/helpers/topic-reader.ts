/** Reads topics back, partition by partition, without a consumer group. */
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createConsumer, partitionBounds, type StringConsumer } from '../../src/platform/kafka/clients.ts'
import { type PartitionRecord, readPartitionRange } from '../../src/platform/kafka/partitions.ts'
import { testConfig, uniqueName } from './infra.ts'

/** A record and the partition it was read from. */
export interface TopicRecord extends PartitionRecord {
  partition: number
}

/** A consumer for reading only (its group is never joined). Close it after use. */
export function createReaderConsumer(): StringConsumer {
  return createConsumer({ brokers: kafkaBrokers(testConfig()) }, uniqueName('topic-reader'))
}

async function withConsumer<T>(consumer: StringConsumer | undefined, use: (c: StringConsumer) => Promise<T>) {
  if (consumer) return use(consumer)
  const own = createReaderConsumer()
  try {
    return await use(own)
  } finally {
    await own.close()
  }
}

/** Every record of every partition, in offset order; index = partition. */
export function readTopic(topic: string, consumer?: StringConsumer): Promise<TopicRecord[][]> {
  return withConsumer(consumer, async (c) => {
    const partitions: TopicRecord[][] = []
    for (const { partition, start, end } of await partitionBounds(c, topic)) {
      const records: TopicRecord[] = []
      for await (const chunk of readPartitionRange(c, topic, partition, start, end)) {
        for (const record of chunk) records.push({ ...record, partition })
      }
      partitions[partition] = records
    }
    return partitions
  })
}

/** The end offset (next offset to write) of each partition. */
export function endOffsets(topic: string, consumer?: StringConsumer): Promise<bigint[]> {
  return withConsumer(consumer, async (c) => (await partitionBounds(c, topic)).map((b) => b.end))
}
