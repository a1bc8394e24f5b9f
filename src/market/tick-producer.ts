/**
 * Sends a price CSV into the market topic so that every good row ends up in the topic
 * exactly once, even when the run is killed and started again.
 *
 * Exactly once across restarts. Every message carries `bourse-source` (a hash of the file
 * content) and `bourse-line` (its CSV line number). Rows are sent in file order, one awaited
 * send at a time, each to the partition of its key computed here ({@link partitionForKey}),
 * by an idempotent producer (acks=all): retries never duplicate and a partition never gets a
 * later row of a send before an earlier one. So in each partition the rows of this file form
 * a prefix, in file order, of the file's rows for that partition. A restart reads the tail of
 * each partition back to the last message of this source, takes its line number L, and skips
 * every row of that partition with a line <= L. Two conditions: one run of a file at a time,
 * and the topic's partition count must not change between runs (keys would move).
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { StringConsumer, StringProducer } from '../platform/kafka/clients.ts'
import { partitionBounds } from '../platform/kafka/clients.ts'
import { partitionForKey, readPartitionRange } from '../platform/kafka/partitions.ts'
import type { Logger } from '../platform/logger.ts'
import { readPriceCsv } from './price-csv.ts'
import { encodeTick, LINE_HEADER, SOURCE_HEADER, type TickMessage } from './tick-message.ts'

/** What {@link produceCsv} needs. */
export interface TickProducerDeps {
  /** An idempotent producer (see `createProducer`). */
  producer: StringProducer
  /** Any consumer: used only to list offsets and fetch partition tails, never joins its group. */
  consumer: StringConsumer
  log: Logger
}

/** Options for {@link produceCsv}. */
export interface ProduceCsvOptions {
  /** Path of the price CSV (`Time,Stock,Price`). */
  csvPath: string
  /** Topic to fill; it must exist. */
  topic: string
  /** Messages per send (each send is awaited before the next starts). @defaultValue 2000 */
  batchSize?: number
  /** Messages read per step when looking back through a partition tail. @defaultValue 1000 */
  tailChunk?: number
  /** Stops sending (after the send in flight) when aborted. */
  signal?: AbortSignal
  /** Called for each bad line (it is skipped). @defaultValue a warning on the log */
  onBadLine?: (bad: BadLine) => void
  /** Called after each send, every `batchSize` rows read and at the end. */
  onProgress?: (progress: ProduceCsvProgress) => void
}

/** Counts so far. */
export interface ProduceCsvProgress {
  /** Data rows read from the file (good and bad). */
  rows: number
  /** Data rows in the file (counted before sending; blank lines included). */
  totalRows: number
  /** Messages sent and acknowledged in this run. */
  sent: number
  /** Good rows found already in the topic (sent by an earlier run). */
  alreadyPresent: number
  /** Bad rows skipped. */
  badLines: number
}

/** A skipped CSV line. */
export interface BadLine {
  line: number
  error: string
}

/** The outcome of {@link produceCsv}. */
export interface ProduceCsvResult extends ProduceCsvProgress {
  /** `bourse-source` of the file. */
  source: string
  /** Partition count of the topic. */
  partitions: number
  /** Highest line of this source found in each partition at start (0 for none). */
  resumedFrom: number[]
  /** The first {@link MAX_REPORTED_BAD_LINES} bad lines. */
  bad: BadLine[]
  /** False when stopped by the signal before the end of the file. */
  completed: boolean
}

/** Bad lines kept in a result (all are logged). */
export const MAX_REPORTED_BAD_LINES = 1000

/** The `bourse-source` of a file (sha256 of its content, 16 hex chars) and its line count. */
export async function describeCsvSource(path: string): Promise<{ source: string; lines: number }> {
  const hash = createHash('sha256')
  let lines = 0
  let lastByte = 10
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk)
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++
    if (chunk.length > 0) lastByte = chunk[chunk.length - 1] as number
  }
  if (lastByte !== 10) lines++
  return { source: hash.digest('hex').slice(0, 16), lines }
}

/**
 * The highest `bourse-line` of `source` in each partition of `topic` (0 where there is
 * none). Reads each partition backwards from its end, `tailChunk` messages first and twice
 * as many at each further step, until a message of this source shows up or the partition
 * start is reached. The last message of the source in a partition carries its highest line,
 * because a source's rows go into a partition in file order.
 */
export async function findProducedLines(
  consumer: StringConsumer,
  topic: string,
  source: string,
  tailChunk = 1000,
): Promise<number[]> {
  const bounds = await partitionBounds(consumer, topic)
  const highest: number[] = []
  // One partition at a time: the consumer's fetch session per broker is not made for
  // concurrent fetches.
  for (const { partition, start, end } of bounds) {
    let upper = end
    let step = BigInt(tailChunk)
    let found = 0
    while (found === 0 && upper > start) {
      let from = upper - step // bigint: no Math.max
      if (from < start) from = start
      for await (const records of readPartitionRange(consumer, topic, partition, from, upper)) {
        for (const record of records) {
          if (record.headers.get(SOURCE_HEADER) !== source) continue
          const line = Number(record.headers.get(LINE_HEADER))
          if (Number.isSafeInteger(line) && line > found) found = line
        }
      }
      upper = from
      if (step < 64n * BigInt(tailChunk)) step *= 2n
    }
    highest[partition] = found
  }
  return highest
}

/**
 * Sends the good rows of a CSV that are not in the topic yet; reports bad rows with their
 * line number and skips them. Rejects when a send fails (nothing after the failed send is
 * sent, so a restart resumes cleanly).
 */
export async function produceCsv(
  deps: TickProducerDeps,
  options: ProduceCsvOptions,
): Promise<ProduceCsvResult> {
  const { producer, consumer, log } = deps
  const { topic, csvPath } = options
  const batchSize = options.batchSize ?? 2000
  const { source, lines } = await describeCsvSource(csvPath)
  const metadata = await consumer.metadata({ topics: [topic] })
  const partitions = metadata.topics.get(topic)?.partitionsCount
  if (!partitions) throw new Error(`topic ${topic} does not exist`)
  const resumedFrom = await findProducedLines(consumer, topic, source, options.tailChunk)
  log.info({ topic, source, partitions, resumedFrom }, 'resume points found')

  const progress: ProduceCsvProgress = {
    rows: 0,
    totalRows: Math.max(0, lines - 1),
    sent: 0,
    alreadyPresent: 0,
    badLines: 0,
  }
  const bad: BadLine[] = []
  let batch: Array<TickMessage & { partition: number }> = []
  // One send in flight while the next batch is read: sends stay strictly one after the other.
  let inflight: Promise<void> | undefined
  const flush = async () => {
    if (inflight) await inflight
    inflight = undefined
    if (batch.length === 0) return
    const messages = batch
    batch = []
    const sending = producer.send({ messages }).then(() => {
      progress.sent += messages.length
      options.onProgress?.({ ...progress })
    })
    sending.catch(() => {}) // observed by the next flush
    inflight = sending
  }

  const partitionOf = new Map<string, number>() // murmur2 is slow-ish, stocks are few
  let completed = true
  for await (const row of readPriceCsv(csvPath)) {
    if (options.signal?.aborted) {
      completed = false
      break
    }
    progress.rows++
    if (progress.rows % batchSize === 0) options.onProgress?.({ ...progress })
    if ('error' in row) {
      progress.badLines++
      if (bad.length < MAX_REPORTED_BAD_LINES) bad.push({ line: row.line, error: row.error })
      if (options.onBadLine) options.onBadLine({ line: row.line, error: row.error })
      else log.warn({ line: row.line }, `skipped bad line: ${row.error}`)
      continue
    }
    let partition = partitionOf.get(row.tick.stock)
    if (partition === undefined) {
      partition = partitionForKey(row.tick.stock, partitions)
      partitionOf.set(row.tick.stock, partition)
    }
    if (row.line <= (resumedFrom[partition] ?? 0)) {
      progress.alreadyPresent++
      continue
    }
    const headers = { [SOURCE_HEADER]: source, [LINE_HEADER]: String(row.line) }
    batch.push({ ...encodeTick(topic, row.tick, headers), partition })
    if (batch.length >= batchSize) await flush()
  }
  if (completed) await flush()
  if (inflight) await inflight
  options.onProgress?.({ ...progress })
  return { ...progress, source, partitions, resumedFrom, bad, completed }
}
