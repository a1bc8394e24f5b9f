/**
 * Partition-level Kafka helpers: the partition a key goes to, and reading an offset range of
 * one partition without joining a consumer group.
 */
import { IS_CONTROL } from '@platformatic/kafka'
import type { StringConsumer } from './clients.ts'
import { murmur2 } from './partitioner.ts'

/**
 * The partition a keyed message goes to, exactly as Bourse's producers pick it (see
 * ./partitioner.ts) and as @platformatic/kafka's default does (`murmur2(key) >>> 0`, the
 * murmur2 of the Java client) modulo the partition count. The Java client masks with `& 0x7fffffff`
 * instead, so for keys whose hash is negative the two may disagree; Bourse's producers
 * set this partition on every message explicitly, so a resume check computing it
 * again always agrees with what was sent.
 */
export function partitionForKey(key: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1)
    throw new RangeError(`bad partition count ${partitions}`)
  return (murmur2(Buffer.from(key, 'utf8')) >>> 0) % partitions
}

/** One record of a partition, decoded as UTF-8 text. */
export interface PartitionRecord {
  /** Offset in the partition. */
  offset: bigint
  /** Key, or undefined for a null key. */
  key: string | undefined
  /** Value, or undefined for a null value. */
  value: string | undefined
  /** Headers (a repeated header keeps its last value). */
  headers: Map<string, string>
  /** Record timestamp, ms since the epoch. */
  timestamp: bigint
}

/** Options for {@link readPartitionRange}. */
export interface ReadPartitionOptions {
  /** Upper bound of bytes one fetch returns for the partition. @defaultValue 4 MiB */
  maxBytes?: number
}

const text = (buffer: Buffer | null | undefined) => (buffer ? buffer.toString('utf8') : undefined)

/**
 * Reads the records of one partition with offsets in `[from, to)`, in offset order, one
 * fetch response at a time. It uses `consumer.fetch` directly (no group join, no commit), so
 * any consumer instance can read any range. `to` must not be above the partition's high
 * watermark (take it from `partitionBounds`), otherwise the read waits for data.
 */
export async function* readPartitionRange(
  consumer: StringConsumer,
  topic: string,
  partition: number,
  from: bigint,
  to: bigint,
  options: ReadPartitionOptions = {},
): AsyncGenerator<PartitionRecord[]> {
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024
  let next = from
  while (next < to) {
    const metadata = await consumer.metadata({ topics: [topic] })
    const topicMetadata = metadata.topics.get(topic)
    const leader = topicMetadata?.partitions[partition]?.leader
    if (!topicMetadata || leader === undefined) throw new Error(`no leader for ${topic}/${partition}`)
    const response = await consumer.fetch({
      node: leader,
      maxWaitTime: 500,
      minBytes: 1,
      maxBytes,
      topics: [
        {
          topicId: topicMetadata.id,
          partitions: [
            {
              partition,
              fetchOffset: next,
              partitionMaxBytes: maxBytes,
              currentLeaderEpoch: -1,
              lastFetchedEpoch: -1,
            },
          ],
        },
      ],
    })
    const records: PartitionRecord[] = []
    let last = next - 1n
    for (const topicResponse of response.responses) {
      for (const partitionResponse of topicResponse.partitions) {
        if (partitionResponse.partitionIndex !== partition) continue
        for (const batch of partitionResponse.records ?? []) {
          const batchLast = batch.firstOffset + BigInt(batch.lastOffsetDelta)
          if (batchLast > last) last = batchLast
          // Transaction markers occupy offsets but carry no message.
          if ((batch.attributes & IS_CONTROL) !== 0) continue
          for (const record of batch.records) {
            const offset = batch.firstOffset + BigInt(record.offsetDelta)
            // A fetch returns whole batches, so the first may start before the asked offset.
            if (offset < next || offset >= to) continue
            const headers = new Map<string, string>()
            for (const [name, value] of record.headers) {
              if (name) headers.set(name.toString('utf8'), text(value) ?? '')
            }
            records.push({
              offset,
              key: text(record.key),
              value: text(record.value),
              headers,
              timestamp: batch.firstTimestamp + record.timestampDelta,
            })
          }
        }
      }
    }
    // Below the high watermark a fetch always returns the batch holding `next`; no batch
    // means the range is not readable (deleted or beyond the end), and looping would spin.
    if (last < next) throw new Error(`fetch of ${topic}/${partition} at offset ${next} returned no records`)
    if (records.length > 0) yield records
    next = last + 1n
  }
}
