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
import type { Message, MessagesStream } from '@platformatic/kafka'
import { MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import type { StringConsumer, StringProducer } from '../platform/kafka/clients.ts'
import { partitionBounds } from '../platform/kafka/clients.ts'
import type { Logger } from '../platform/logger.ts'
import type { SourcedTick, StockHistoryRepository } from './stock-history.repository.ts'
import { decodeTick } from './tick-message.ts'

type StringMessage = Message<string, string, string, string>
type StringStream = MessagesStream<string, string, string, string>

/** Dependencies of the price updater. */
export interface PriceUpdaterDeps {
  consumer: StringConsumer
  /** Sends poison messages to the dead-letter topic. */
  producer: StringProducer
  history: StockHistoryRepository
  log: Logger
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

/**
 * Pulls batches from a message stream: a batch ends when it is full or when no further
 * message is buffered. Waiting for messages goes through the stream's async iterator:
 * waiting on 'readable' events ourselves stalled a partition under backpressure in
 * @platformatic/kafka 2.12 (reproduced on a 1,000,000-message topic); the iterator does not.
 */
function createBatchReader(stream: StringStream, batchSize: number, idleMs: number) {
  const iterator = stream[Symbol.asyncIterator]()
  let pending: Promise<IteratorResult<StringMessage>> | undefined
  return async (signal: AbortSignal): Promise<StringMessage[] | 'idle' | 'stopped'> => {
    const batch: StringMessage[] = []
    for (;;) {
      pending ??= iterator.next()
      let result: IteratorResult<StringMessage> | 'idle' | 'stopped'
      if (batch.length > 0) result = await pending
      else {
        let timer: NodeJS.Timeout | undefined
        let onAbort: (() => void) | undefined
        result = await Promise.race([
          pending,
          new Promise<'idle'>((resolve) => {
            timer = setTimeout(() => resolve('idle'), idleMs)
          }),
          new Promise<'stopped'>((resolve) => {
            onAbort = () => resolve('stopped')
            if (signal.aborted) onAbort()
            else signal.addEventListener('abort', onAbort, { once: true })
          }),
        ])
        clearTimeout(timer)
        if (onAbort) signal.removeEventListener('abort', onAbort)
        if (result === 'idle' || result === 'stopped') return result
      }
      pending = undefined
      if (result.done) return batch.length > 0 ? batch : 'stopped'
      batch.push(result.value)
      // What is already buffered is taken without a promise per message; waiting for more
      // is left to the iterator.
      while (batch.length < batchSize) {
        const message = stream.read() as StringMessage | null
        if (message === null) break
        batch.push(message)
      }
      if (batch.length >= batchSize || stream.readableLength === 0) return batch
    }
  }
}

/** Creates the price updater. */
export function createPriceUpdater(deps: PriceUpdaterDeps, options: PriceUpdaterOptions): PriceUpdater {
  const { consumer, producer, history } = deps
  const log = deps.log.child({ component: 'price-updater', topic: options.topic, group: options.group })
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
  /** Last offset applied in Redis per partition, as far as this instance knows. */
  const applied = new Map<number, bigint>()
  /** Newest applied message per partition not yet committed to Kafka. */
  const toCommit = new Map<number, StringMessage>()
  let lastCommit = Date.now()

  const commitToKafka = async () => {
    const messages = [...toCommit.values()]
    toCommit.clear()
    lastCommit = Date.now()
    // A commit can fail during a rebalance; Redis already holds the truth, so the next
    // owner of the partition skips what was applied. Logged, not fatal.
    await Promise.all(
      messages.map((m) =>
        Promise.resolve(m.commit()).catch((err: unknown) =>
          log.debug({ err, partition: m.partition }, 'kafka commit failed'),
        ),
      ),
    )
  }

  const sendToDeadLetter = async (poison: Array<{ message: StringMessage; reason: string }>) => {
    await producer.send({
      messages: poison.map(({ message, reason }) => ({
        topic: options.deadLetterTopic,
        key: message.key ?? '',
        value: message.value ?? '',
        headers: {
          'bourse-error': reason,
          'bourse-source-topic': message.topic,
          'bourse-source-partition': String(message.partition),
          'bourse-source-offset': message.offset.toString(),
        },
      })),
    })
    for (const { message, reason } of poison) {
      log.warn({ partition: message.partition, offset: message.offset.toString(), reason }, 'dead-lettered message')
    }
  }

  /**
   * Decodes a batch, dead-letters its poison, and applies it. `previous` is the batch
   * before, possibly still in flight, and `submittedBefore` the offsets submitted up to
   * it: the apply script refuses this batch while the previous one is not applied.
   */
  const applyBatch = async (
    batch: StringMessage[],
    signal: AbortSignal,
    previous: Promise<unknown>,
    submittedBefore: ReadonlyMap<number, bigint>,
  ) => {
    const ticks: SourcedTick[] = []
    const poison: Array<{ message: StringMessage; reason: string }> = []
    for (const message of batch) {
      const result = decodeTick(message.key, message.value)
      if (result.ok) {
        const tick: SourcedTick = result.tick
        tick.source = { partition: message.partition, offset: message.offset }
        ticks.push(tick)
      } else poison.push({ message, reason: result.reason })
    }
    // Dead letters first: if we crash after this, the messages are re-sent to the
    // dead-letter topic (at least once there) but never lost.
    if (poison.length > 0) await sendToDeadLetter(poison)
    const consumedOnly = poison.map(({ message }) => ({ partition: message.partition, offset: message.offset }))
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await history.applyTicks(ticks, {
          group: options.group,
          topic: options.topic,
          consumedOnly,
          submittedBefore,
          previous,
        })
        stats.batches++
        stats.messages += batch.length
        stats.appended += result.appended
        stats.updated += result.updated
        stats.unchanged += result.unchanged
        stats.replayed += result.replayed
        stats.deadLettered += poison.length
        if (result.quarantined > 0) log.warn({ count: result.quarantined }, 'moved non-contract stock values aside')
        break
      } catch (err) {
        // Redis unreachable (or the previous batch failed): nothing of this batch was
        // applied; retry until it is or we stop.
        if (signal.aborted) throw err
        log.error({ err, attempt }, 'applying batch failed, retrying')
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 100 * 2 ** attempt)))
      }
    }
    for (const message of batch) {
      const current = applied.get(message.partition)
      if (current === undefined || message.offset > current) applied.set(message.partition, message.offset)
      toCommit.set(message.partition, message)
    }
  }

  /** True when every partition of the topic is applied (by any instance) up to its end. */
  const caughtUp = async () => {
    const [bounds, stored] = await Promise.all([
      partitionBounds(consumer, options.topic),
      history.appliedOffsets(options.group, options.topic),
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
      for (const [partition, offset] of await history.appliedOffsets(options.group, options.topic)) {
        applied.set(partition, offset)
      }
      const stream = await consumer.consume({
        topics: [options.topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
      })
      // On every (re)assignment, move each partition to the offset after the last one
      // applied in Redis, when that is ahead of Kafka's committed offset.
      stream.on('offsets', () => {
        for (const [key, next] of stream.offsetsToFetch) {
          const separator = key.lastIndexOf(':')
          if (key.slice(0, separator) !== options.topic) continue
          const done = applied.get(Number(key.slice(separator + 1)))
          if (done !== undefined && done + 1n > next) stream.offsetsToFetch.set(key, done + 1n)
        }
      })
      const nextBatch = createBatchReader(stream, batchSize, idleMs)
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
          previous = current
          current = applyBatch(batch, signal, previous, submittedBefore)
          current.catch(() => {}) // surfaced when awaited as `previous` or by settled()
          if (Date.now() - lastCommit >= commitIntervalMs) await commitToKafka()
          if (signal.aborted) break
        }
        await settled()
      } finally {
        await settled().catch((err: unknown) => log.error({ err }, 'last batches failed'))
        await history.flush().catch((err: unknown) => log.error({ err }, 'final flush failed'))
        await commitToKafka()
        await stream.close().catch((err: unknown) => log.warn({ err }, 'closing stream failed'))
      }
      return { ...stats }
    },
  }
}
