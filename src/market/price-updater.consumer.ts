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
 */
import type { Registry } from 'prom-client'
import {
  createBatchReader,
  createTopicConsumer,
  type DeadLetter,
  partitionBounds,
  type StringConsumer,
  type StringMessage,
  type StringProducer,
  takeBatch,
  type TakenOffsets,
} from '../platform/kafka/index.ts'
import type { Logger } from '../platform/logger.ts'
import { retry } from '../platform/retry.ts'
import type { SourcedTick, StockHistoryRepository } from './stock-history.repository.ts'
import { decodeTick } from './tick-message.ts'

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

const positionOfMessage = (message: StringMessage) => message

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
  /** Messages submitted and not yet applied. */
  let inFlight = 0
  let lastCommit = Date.now()

  /**
   * Decodes a batch, dead-letters its poison, and applies it. `previous` is the batch
   * before, possibly still in flight, and `submittedBefore` the offsets submitted up to
   * it: the apply script refuses this batch while the previous one is not applied.
   */
  const applyBatch = async (
    batch: StringMessage[],
    ranges: TakenOffsets[],
    signal: AbortSignal,
    previous: Promise<unknown>,
    submittedBefore: ReadonlyMap<number, bigint>,
  ) => {
    const ticks: SourcedTick[] = []
    const poison: DeadLetter[] = []
    for (const message of batch) {
      const result = decodeTick(message.key, message.value)
      if (result.ok) {
        const tick: SourcedTick = result.tick
        tick.source = { partition: message.partition, offset: message.offset }
        ticks.push(tick)
      } else poison.push({ message, reason: result.reason })
    }
    // Dead letters first: if we crash after this, the messages are re-sent to the
    // dead-letter topic (at least once there) but never lost. A failed send is retried
    // until it succeeds or we stop.
    await deadLetter(poison, signal)
    const consumedOnly = poison.map(({ message }) => ({ partition: message.partition, offset: message.offset }))
    // Redis unreachable (or the previous batch failed): nothing of this batch was
    // applied; retry until it is or we stop.
    const result = await retry(
      () => history.applyTicks(ticks, { group, topic, consumedOnly, submittedBefore, previous }),
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

  /** True when every partition of the topic is applied (by any instance) up to its end. */
  const caughtUp = async () => {
    const [bounds, stored] = await Promise.all([
      partitionBounds(consumer, topic),
      history.appliedOffsets(group, topic),
    ])
    return bounds.every(({ partition, start, end }) => {
      if (end <= start) return true
      const done = stored.get(partition)
      return done !== undefined && done + 1n >= end
    })
  }

  return {
    stats,
    async run(signal) {
      for (const [partition, offset] of await history.appliedOffsets(group, topic)) {
        applied.set(partition, offset)
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
      // applied in Redis, when that is ahead of Kafka's committed offset.
      stream.on('offsets', () => {
        for (const [key, next] of stream.offsetsToFetch) {
          const separator = key.lastIndexOf(':')
          if (key.slice(0, separator) !== topic) continue
          const done = applied.get(Number(key.slice(separator + 1)))
          if (done !== undefined && done + 1n > next) stream.offsetsToFetch.set(key, done + 1n)
        }
      })
      const nextBatch = createBatchReader(stream, { maxBatch: batchSize, idleMs })
      // Two batches at most are outstanding: one applying in Redis while the next is
      // decoded and sent behind it (the script keeps them in order, see applyBatch).
      const submitted = new Map<number, bigint>()
      let previous: Promise<void> = Promise.resolve()
      let current: Promise<void> = Promise.resolve()
      const settled = async () => {
        await previous
        await current
      }
      log.info({ applied: Object.fromEntries([...applied].map(([p, o]) => [p, o.toString()])) }, 'consuming')
      try {
        for (;;) {
          const batch = await nextBatch(signal)
          if (batch === 'stopped') break
          if (batch === 'idle') {
            await settled()
            await history.flush()
            await commitToKafka()
            if (options.untilIdle && (await caughtUp())) {
              log.info({ ...stats }, 'caught up')
              break
            }
            continue
          }
          await previous
          const submittedBefore = new Map(submitted)
          for (const message of batch) {
            const last = submitted.get(message.partition)
            if (last === undefined || message.offset > last) submitted.set(message.partition, message.offset)
          }
          const ranges = takeBatch(tracker, batch, positionOfMessage)
          inFlight += batch.length
          metrics.messages(batch.length)
          metrics.inFlight(inFlight)
          previous = current
          current = applyBatch(batch, ranges, signal, previous, submittedBefore)
          current.catch(() => {}) // surfaced when awaited as `previous` or by settled()
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
    },
  }
}
