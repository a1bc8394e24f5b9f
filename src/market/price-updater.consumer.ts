/**
 * The price updater (seed step 3): consumes ticks from the market topic as a consumer
 * group and writes them into the Redis contract, exactly once.
 *
 * Exactly once across SIGKILL: Redis, not Kafka, is the record of what was applied. Each
 * batch's ticks and the group's consumed offsets are written by one Lua script
 * (`applyTicks`), so a crash leaves Redis with all of a batch or none of it. When
 * partitions are assigned, the stream is moved to the offsets stored in Redis; ticks at
 * or below them that still arrive (Kafka's committed offset lags Redis after a crash, or a
 * partition moved to another instance mid-batch) are skipped by the script. Kafka offsets
 * are committed after Redis, only to keep lag metrics and restarts cheap.
 *
 * Redis losing data: Kafka's committed offsets are only a hint, so they are never used to
 * resume a group Redis holds no record of. At the start, a group that has committed
 * offsets in Kafka for a partition Redis holds no applied offset of is refused: Redis lost
 * its data, and starting from Kafka's offsets would skip every tick before them. Running,
 * an offsets record that vanished or went back (seen by the apply script, or at idle) stops
 * the updater with a {@link FatalError} saying what to run. `rebuild` recovers: it deletes
 * the group's offsets and replays every partition from its beginning.
 */
import type { Registry } from 'prom-client'
import {
  createBatchReader,
  createTopicConsumer,
  type DeadLetter,
  type MessagePosition,
  partitionBounds,
  type StringConsumer,
  type StringMessage,
  type StringProducer,
  takeBatch,
  type TakenOffsets,
} from '../platform/kafka/index.ts'
import type { Logger } from '../platform/logger.ts'
import { FatalError, retry, RetryAbortedError } from '../platform/retry.ts'
import {
  AppliedOffsetsLostError,
  type OffsetRange,
  offsetsKey,
  type SourcedTick,
  type StockHistoryRepository,
} from './stock-history.repository.ts'
import { type DecodedTick, readTick } from './tick-message.ts'

/** Dependencies of the price updater. */
export interface PriceUpdaterDeps {
  consumer: StringConsumer
  /** Sends poison messages to the dead-letter topic. */
  producer: StringProducer
  history: StockHistoryRepository
  log: Logger
  /** Where the consumer's counters are registered. @defaultValue none */
  metrics?: Registry
}

/** Options of the price updater. */
export interface PriceUpdaterOptions {
  /** Topic to consume. */
  topic: string
  /** Consumer group; also names the applied-offsets record in Redis. */
  group: string
  /** Where malformed messages go, with the reason in the `bourse-error` header. */
  deadLetterTopic: string
  /** Most messages applied in one atomic step. @defaultValue 5000 */
  batchSize?: number
  /** Quiet time after which the updater counts as idle (flush, commit, maybe exit). @defaultValue 500 */
  idleMs?: number
  /** Stop once every partition is applied up to its end. @defaultValue false */
  untilIdle?: boolean
  /** How often applied offsets are also committed to Kafka. @defaultValue 1000 */
  commitIntervalMs?: number
  /** Ceiling of the first delay before a failed Redis write or dead-letter send is retried, in ms. @defaultValue 100 */
  retryBaseMs?: number
  /** Highest ceiling of a delay between two attempts, in ms. @defaultValue 5000 */
  retryMaxMs?: number
  /**
   * Recovery after Redis lost data: delete the group's applied offsets and replay every
   * partition from its beginning. Histories are not cleared: each tick sets its time's
   * price again, so a history holding any part of the topic's ticks (or none) ends equal
   * to a clean run. @defaultValue false
   */
  rebuild?: boolean
}

/** The command that recovers a group whose record Redis lost. */
function rebuildCommand(topic: string, group: string): string {
  return `bourse price-updater --topic ${topic} --group ${group} --rebuild --until-idle`
}

/** What the operator reads when Redis lost (or went back on) the group's record while the updater ran. */
function stoppedMessage(err: AppliedOffsetsLostError, topic: string, group: string): string {
  if (err.stored === undefined) {
    return (
      `${err.message}. Stopped, so that nothing is applied on top of a partial state. The ticks are still ` +
      `in Kafka: run \`${rebuildCommand(topic, group)}\` to replay the topic into Redis, then start the price updater again.`
    )
  }
  return (
    `${err.message}. Stopped; the ticks after offset ${err.stored} are still in Kafka: start the price updater ` +
    "again and it resumes from Redis's offsets."
  )
}

/** Running totals, for progress output and tests. */
export interface PriceUpdaterStats {
  batches: number
  messages: number
  appended: number
  updated: number
  unchanged: number
  replayed: number
  deadLettered: number
}

/** The running consumer. */
export interface PriceUpdater {
  /** Consumes until `signal` aborts or, with `untilIdle`, until caught up. */
  run(signal: AbortSignal): Promise<PriceUpdaterStats>
  readonly stats: Readonly<PriceUpdaterStats>
}

/** A message as the batch reader hands it over: its tick, or why it is poison (then the message itself, to dead-letter). */
type Decoded = DecodedTick<MessagePosition> | { reason: string; message: StringMessage; source: MessagePosition }

/**
 * Decodes a message as it is read: the batch then holds ticks, and the Kafka message
 * objects (key, value, headers, offsets) die young instead of waiting in the batch while
 * Redis applies it.
 */
function decodeMessage(message: StringMessage): Decoded {
  const source = { partition: message.partition, offset: message.offset, leaderEpoch: message.leaderEpoch }
  const read = readTick(message.key, message.value, source)
  return typeof read === 'string' ? { reason: read, message, source } : read
}

const positionOf = (item: Decoded) => item.source!

/** The first and last offset per partition of a batch, from the runs the tracker took: every message, tick or poison. */
function offsetRangesOf(ranges: readonly TakenOffsets[]): Map<number, OffsetRange> {
  const merged = new Map<number, OffsetRange>()
  for (const { partition, first, last } of ranges) {
    const known = merged.get(partition)
    if (!known) merged.set(partition, { first, last })
    else {
      if (first < known.first) known.first = first
      if (last > known.last) known.last = last
    }
  }
  return merged
}

/** Creates the price updater. */
export function createPriceUpdater(deps: PriceUpdaterDeps, options: PriceUpdaterOptions): PriceUpdater {
  const { consumer, producer, history } = deps
  const { topic, group } = options
  const log = deps.log.child({ component: 'price-updater', topic, group })
  const batchSize = options.batchSize ?? 5000
  const idleMs = options.idleMs ?? 500
  const commitIntervalMs = options.commitIntervalMs ?? 1000
  const stats: PriceUpdaterStats = {
    batches: 0,
    messages: 0,
    appended: 0,
    updated: 0,
    unchanged: 0,
    replayed: 0,
    deadLettered: 0,
  }
  const kafka = createTopicConsumer(
    { consumer, producer, log, metrics: deps.metrics },
    { topic, group, deadLetterTopic: options.deadLetterTopic, retryBaseMs: options.retryBaseMs, retryMaxMs: options.retryMaxMs },
  )
  /** The tracker knows what is applied, for the Kafka commit (a hint: Redis holds the truth). */
  const { metrics, deadLetter, tracker } = kafka
  /** Last offset applied in Redis per partition, as far as this instance knows. */
  const applied = new Map<number, bigint>()
  /** With `rebuild`: where each partition not applied yet starts (its beginning). */
  const replayFrom = new Map<number, bigint>()
  /** Messages submitted and not yet applied. */
  let inFlight = 0
  let lastCommit = Date.now()

  /**
   * Decodes a batch, dead-letters its poison, and applies it. `previous` is the batch
   * before, possibly still in flight, and `submittedBefore` the offsets submitted up to
   * it: the apply script refuses this batch while the previous one is not applied.
   */
  const applyBatch = async (
    batch: Decoded[],
    ranges: TakenOffsets[],
    offsetRanges: ReadonlyMap<number, OffsetRange>,
    signal: AbortSignal,
    previous: Promise<unknown>,
    submittedBefore: ReadonlyMap<number, bigint>,
  ) => {
    const poison: DeadLetter[] = []
    for (const item of batch) if ('reason' in item) poison.push({ message: item.message, reason: item.reason })
    // Without poison (the usual batch) the batch itself is the ticks: no copy.
    const ticks = (poison.length === 0 ? batch : batch.filter((item) => !('reason' in item))) as SourcedTick[]
    // Dead letters first: if we crash after this, the messages are re-sent to the
    // dead-letter topic (at least once there) but never lost. A failed send is retried
    // until it succeeds or we stop.
    await deadLetter(poison, signal)
    const consumedOnly = poison.map(({ message }) => ({ partition: message.partition, offset: message.offset }))
    // Redis unreachable (or the previous batch failed): nothing of this batch was
    // applied; retry until it is or we stop.
    const result = await retry(
      () =>
        history.applyTicks(ticks, {
          group,
          topic,
          consumedOnly,
          ranges: offsetRanges,
          submittedBefore,
          previous,
          // Once this instance knows of applied offsets, the record must stay: a missing
          // one is Redis having lost it, not a new group.
          recordExpected: applied.size > 0 || submittedBefore.size > 0,
        }),
      { ...kafka.backoff, what: 'applying batch', signal, log, onRetry: () => metrics.retry() },
    )
    stats.batches++
    stats.messages += batch.length
    stats.appended += result.appended
    stats.updated += result.updated
    stats.unchanged += result.unchanged
    stats.replayed += result.replayed
    stats.deadLettered += poison.length
    if (result.quarantined > 0) log.warn({ count: result.quarantined }, 'moved non-contract stock values aside')
    for (const range of ranges) {
      const current = applied.get(range.partition)
      if (current === undefined || range.last > current) applied.set(range.partition, range.last)
      range.finish()
    }
    inFlight -= batch.length
    metrics.batch()
    metrics.inFlight(inFlight)
  }

  /**
   * Refuses to start when Kafka has committed offsets of the group for a partition Redis
   * holds no applied offset of: Kafka commits only what Redis recorded first, so Redis lost
   * its data, and resuming from Kafka's offsets would skip every tick before them.
   */
  const refuseLostRecord = (bounds: ReadonlyArray<{ partition: number; start: bigint }>, committed: bigint[] | undefined) => {
    const lost = bounds.filter(({ partition, start }) => {
      const next = committed?.[partition] ?? -1n
      return next > start && !applied.has(partition)
    })
    if (lost.length === 0) return
    const where = lost.map(({ partition }) => `${topic}/${partition} at ${committed?.[partition]}`).join(', ')
    throw new FatalError(
      `refusing to start: Redis holds no applied offset of group ${group} for ` +
        `${applied.size === 0 ? `topic ${topic} (no ${offsetsKey(group, topic)})` : lost.map((b) => `${topic}/${b.partition}`).join(', ')}` +
        `, but Kafka has the group's committed offsets (${where}): Redis lost its data (flushed, or restarted ` +
        'without persistence), and resuming from Kafka would skip every tick before them. The ticks are still in ' +
        `Kafka: run \`${rebuildCommand(topic, group)}\` to replay the topic into Redis, then start the price updater as usual.`,
    )
  }

  /**
   * At idle: Redis must still hold at least what this instance applied. A record gone or
   * behind means Redis lost writes; without this check a quiet partition would never
   * notice, and `untilIdle` would wait for ever.
   */
  const checkRecord = (stored: ReadonlyMap<number, bigint>) => {
    if (stored.size === 0 && applied.size > 0) throw new AppliedOffsetsLostError(topic, group)
    for (const [partition, done] of applied) {
      const now = stored.get(partition)
      if (now === undefined || now < done) throw new AppliedOffsetsLostError(topic, group, partition, now, done)
    }
  }

  /** True when every partition of the topic is applied (by any instance) up to its end. */
  const caughtUp = async (stored: ReadonlyMap<number, bigint>) => {
    const bounds = await partitionBounds(consumer, topic)
    return bounds.every(({ partition, start, end }) => {
      if (end <= start) return true
      const done = stored.get(partition)
      return done !== undefined && done + 1n >= end
    })
  }

  const consume = async (signal: AbortSignal): Promise<PriceUpdaterStats> => {
    const bounds = await partitionBounds(consumer, topic)
    const starts = new Map(bounds.map(({ partition, start }) => [partition, start]))
    if (options.rebuild) {
      const cleared = await history.clearAppliedOffsets(group, topic)
      log.warn({ cleared }, 'rebuilding: replaying every partition from its beginning')
      for (const { partition, start } of bounds) replayFrom.set(partition, start)
    } else {
      // Kafka's committed offsets are read before Redis's record: a commit always follows
      // the Redis write, so another instance applying in between cannot look like a loss.
      const committed = (
        await consumer.listCommittedOffsets({ topics: [{ topic, partitions: bounds.map((b) => b.partition) }] })
      ).get(topic)
      for (const [partition, offset] of await history.appliedOffsets(group, topic)) applied.set(partition, offset)
      refuseLostRecord(bounds, committed)
    }
    const session = await kafka.open()
    const { stream } = session
    // A commit can fail during a rebalance; Redis already holds the truth, so the next
    // owner of the partition skips what was applied. Logged, not fatal.
    const commitToKafka = async () => {
      lastCommit = Date.now()
      await session.commit()
    }
    // On every (re)assignment, move each partition to the offset after the last one
    // applied in Redis (as far as this instance knows), ahead of Kafka's committed
    // offset or behind it: Redis is the record, and Kafka's offset runs ahead of it when
    // Redis restarted from an older save. A rebuild starts partitions it has not
    // applied yet at their beginning. Never below the partition's beginning: Kafka would
    // answer out of range, move it there and ask again.
    stream.on('offsets', () => {
      for (const [key, next] of stream.offsetsToFetch) {
        const separator = key.lastIndexOf(':')
        if (key.slice(0, separator) !== topic) continue
        const partition = Number(key.slice(separator + 1))
        const done = applied.get(partition)
        const from = done === undefined ? replayFrom.get(partition) : done + 1n
        if (from !== undefined && from !== next && from >= (starts.get(partition) ?? 0n)) stream.offsetsToFetch.set(key, from)
      }
    })
    const nextBatch = createBatchReader(stream, { maxBatch: batchSize, idleMs, decode: decodeMessage })
    // Two batches at most are outstanding: one applying in Redis while the next is
    // decoded and sent behind it (the script keeps them in order, see applyBatch).
    const submitted = new Map<number, bigint>()
    let previous: Promise<void> = Promise.resolve()
    let current: Promise<void> = Promise.resolve()
    // A failed batch stops the reading at once (its error is thrown by settled()): waiting
    // for the next batch or idle to notice would leave a stopped updater looking alive.
    const failed = new AbortController()
    const reading = AbortSignal.any([signal, failed.signal])
    const settled = async () => {
      await previous
      await current
    }
    log.info({ applied: Object.fromEntries([...applied].map(([p, o]) => [p, o.toString()])) }, 'consuming')
    try {
      for (;;) {
        const batch = await nextBatch(reading)
        if (batch === 'stopped') break
        if (batch === 'idle') {
          await settled()
          // Redis may be briefly down (restarting): retried like a batch, not fatal.
          let stored: Map<number, bigint>
          try {
            stored = await retry(
              async () => {
                await history.flush()
                return history.appliedOffsets(group, topic)
              },
              { ...kafka.backoff, what: 'checking what is applied', signal, log, onRetry: () => metrics.retry() },
            )
          } catch (err) {
            if (err instanceof RetryAbortedError) break
            throw err
          }
          await commitToKafka()
          checkRecord(stored)
          if (options.untilIdle && (await caughtUp(stored))) {
            log.info({ ...stats }, 'caught up')
            break
          }
          continue
        }
        await previous
        const submittedBefore = new Map(submitted)
        const ranges = takeBatch(tracker, batch, positionOf)
        const offsetRanges = offsetRangesOf(ranges)
        for (const [partition, { last }] of offsetRanges) {
          const before = submitted.get(partition)
          if (before === undefined || last > before) submitted.set(partition, last)
        }
        inFlight += batch.length
        metrics.messages(batch.length)
        metrics.inFlight(inFlight)
        previous = current
        current = applyBatch(batch, ranges, offsetRanges, signal, previous, submittedBefore)
        current.catch(() => failed.abort()) // surfaced when awaited as `previous` or by settled()
        if (Date.now() - lastCommit >= commitIntervalMs) await commitToKafka()
        if (signal.aborted) break
      }
      await settled()
    } finally {
      await settled().catch((err: unknown) => log.error({ err }, 'last batches failed'))
      await history.flush().catch((err: unknown) => log.error({ err }, 'final flush failed'))
      await session.close()
    }
    return { ...stats }
  }

  return {
    stats,
    async run(signal) {
      try {
        return await consume(signal)
      } catch (err) {
        if (err instanceof AppliedOffsetsLostError) throw new FatalError(stoppedMessage(err, topic, group), { cause: err })
        throw err
      }
    },
  }
}
