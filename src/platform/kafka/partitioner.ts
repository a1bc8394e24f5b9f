/**
 * The partitioner of every Bourse producer: @platformatic/kafka's default choice of
 * partition (the Java client's murmur2 of the key, taken `>>> 0` where the Java client
 * masks with `& 0x7fffffff`), in time linear in the key's length. The library's murmur2 multiplies BigInts it never cuts back
 * to 32 bits, so its cost grows with the square of the key: a 300 KB key took 49 s,
 * stalling a producer (the dead-letter sender forwards whatever key a message came with).
 * The hash is the same, so every key keeps its partition.
 */
import type { Partitioner } from '@platformatic/kafka'

const SEED = 0x9747b28c
const M = 0x5bd1e995

/** Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`) of `data`, a signed 32-bit integer. */
export function murmur2(data: Buffer): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  let i = 0
  for (; i + 4 <= length; i += 4) {
    let k = data.readInt32LE(i)
    k = Math.imul(k, M)
    k ^= k >>> 24
    k = Math.imul(k, M)
    h = Math.imul(h, M) ^ k
  }
  const rest = length - i
  if (rest > 0) {
    if (rest === 3) h ^= data[i + 2]! << 16
    if (rest >= 2) h ^= data[i + 1]! << 8
    h ^= data[i]!
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/**
 * A keyed message goes where Kafka's default partitioner puts it (the producer takes the
 * result modulo the partition count); a message without a key goes round-robin per
 * topic, as with the library's default.
 */
export function createKeyPartitioner<Key, Value, HeaderKey, HeaderValue>(): Partitioner<Key, Value, HeaderKey, HeaderValue> {
  const next = new Map<string, number>()
  return (message, key) => {
    if (key !== undefined) return murmur2(key) >>> 0
    const turn = next.get(message.topic) ?? 0
    next.set(message.topic, (turn + 1) % 0x7fffffff)
    return turn
  }
}
