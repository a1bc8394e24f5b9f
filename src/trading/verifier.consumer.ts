/**
 * The order verifier (the seed's BuyStock verification): consumes orders from Kafka,
 * verifies each user through the external API (1 to 100 s, over the timeout counts as
 * stalled), then executes or rejects the order in PostgreSQL and tells the user.
 *
 * Least delay: every order is verified as soon as it arrives, thousands at once per
 * instance, so a slow verification never holds up the orders behind it. When
 * `maxInFlight` orders are verifying, no further message is pulled (Kafka's stream
 * buffers at most its high-water mark) until one finishes.
 *
 * Nothing lost, nothing executed twice: an order's offset is committed to Kafka only
 * when it and every order before it in its partition has reached its final state and
 * that state was projected and published. The commit per partition is therefore the
 * lowest offset still in flight (or the last received + 1 when none is). After a crash
 * the orders from there on are consumed again: those already final are only projected
 * and published again (`startVerification` and the finishing never change a final
 * order), the others are verified again against their original deadline.
 *
 * Finishing: the outcomes of verifications that end close together are applied by one
 * statement (`createOrderFinisher`), so orders of one user do not queue one by one on
 * its row lock; the user's Redis projection is then written once for all of them (the
 * newest version), while each order's status is still published on its own.
 *
 * Rebalances: the stream goes back to the committed offsets, so orders already in flight
 * arrive again. A second copy of an order waits for the first one in this process; the
 * tracking of the partition starts over, and the superseded one (or that of a revoked
 * partition) keeps holding back commits of that partition until its orders finish.
 * Another instance verifying the same order at the same time is harmless: the order row
 * is locked by the finishing, which applies only the first outcome.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Message, MessagesStream } from '@platformatic/kafka'
import { MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import type { Db } from '../platform/db/index.ts'
import type { OrderRow, UserRow } from '../platform/db/schema.ts'
import type { StringConsumer, StringProducer } from '../platform/kafka/clients.ts'
import type { Logger } from '../platform/logger.ts'
import type { Redis } from '../platform/redis.ts'
import { createTurnLoader } from '../platform/turn-loader.ts'
import { findUser } from './accounts.repository.ts'
import { publishOrderStatus } from './order-events.ts'
import {
  type CallbackSettings,
  createOrderFinisher,
  type OrderFinisherOptions,
  startVerification,
  type VerificationOutcome,
} from './order-execution.ts'
import { decodeOrderMessage, type OrderMessage, orderRowFromMessage } from './order-message.ts'
import { orderView } from './order-view.ts'
import { findOrder, insertOrder } from './orders.repository.ts'
import { projectUser } from './user-projection.ts'
import type { VerificationClient, VerificationResult } from './verification.client.ts'

type StringMessage = Message<string, string, string, string>
type StringStream = MessagesStream<string, string, string, string>

/** Dependencies of the verifier. */
export interface OrderVerifierDeps {
  consumer: StringConsumer
  /** Sends poison messages to the dead-letter topic. */
  producer: StringProducer
  db: Db
  /** Receives the `userN` projections and the status messages. */
  redis: Redis
  /** The market's latest prices (`createStockHistoryRepository(redis)`). */
  prices: { readLatestPrices(stocks: readonly string[]): Promise<Array<number | null | undefined>> }
  client: Pick<VerificationClient, 'verify'>
  log: Logger
}

/** Options of the verifier. */
export interface OrderVerifierOptions {
  /** The orders topic. */
  topic: string
  /** Where undecodable orders and orders PostgreSQL refuses go, with the reason in the `bourse-error` header. */
  deadLetterTopic: string
  /** Orders verifying at once in this instance. @defaultValue 5000 */
  maxInFlight?: number
  /** A verification not answered this long after it first started is stalled: the order is rejected (ms). */
  timeoutMs: number
  /** The callback outbox written with each final state (its schema names the NOTIFY channel). */
  callbacks: CallbackSettings
  /** How outcomes are gathered into batches. @defaultValue the finisher's defaults */
  finishing?: OrderFinisherOptions
  /** How often finished offsets are committed to Kafka, when they moved. @defaultValue 200 */
  commitIntervalMs?: number
  /** On shutdown, how long verifications in flight may still finish before they are abandoned uncommitted. @defaultValue 5000 */
  shutdownGraceMs?: number
  /** First delay before retrying an order after a PostgreSQL, Redis or Kafka error; doubles per attempt. @defaultValue 100 */
  retryBaseMs?: number
  /** Longest delay between two attempts of an order. @defaultValue 5000 */
  retryMaxMs?: number
}

/** Running totals, for progress output and tests. */
export interface OrderVerifierStats {
  /** Messages taken from Kafka. */
  received: number
  /** Verifications the API answered "verified". */
  verified: number
  /** Verifications the API answered "not verified". */
  failed: number
  /** Verifications that reached their deadline (stalled). */
  timeouts: number
  /** Orders this instance filled. */
  filled: number
  /** Orders this instance rejected (any reason). */
  rejected: number
  /** Messages of orders already final (a replay, a duplicate): only projected and published again. */
  replayed: number
  /** Orders being processed now. */
  inFlight: number
  /** Messages sent to the dead-letter topic. */
  deadLettered: number
  /** Offset commits sent to Kafka. */
  commits: number
}

/** The running verifier. */
export interface OrderVerifier {
  /**
   * Consumes until `signal` aborts, then stops pulling, lets the orders in flight finish
   * for up to `shutdownGraceMs`, commits what is finished and resolves. Rejects when the
   * Kafka stream fails.
   */
  run(signal: AbortSignal): Promise<OrderVerifierStats>
  readonly stats: Readonly<OrderVerifierStats>
}

/** Thrown inside an order's processing once the shutdown gave up waiting for it. */
class AbandonedError extends Error {
  override name = 'AbandonedError'
}

/** What is in flight in one partition, as received from the stream (offsets ascending). */
interface PartitionProgress {
  partition: number
  /** Offsets taken and not finished, in the order received, so the first is the lowest; value = leader epoch. */
  inFlight: Map<bigint, number>
  /** Highest offset received, and its leader epoch. */
  lastReceived: bigint
  lastEpoch: number
  /** Offset last committed by this instance (Kafka's next-to-read). */
  committed: bigint | undefined
}

/** The offset to commit: the lowest still in flight, or the one after the last received. */
function commitTarget(progress: PartitionProgress): { offset: bigint; leaderEpoch: number } {
  const first = progress.inFlight.entries().next()
  if (!first.done) return { offset: first.value[0], leaderEpoch: first.value[1] }
  return { offset: progress.lastReceived + 1n, leaderEpoch: progress.lastEpoch }
}

/** The lowest offset still in flight, if any. */
function lowestInFlight(progress: PartitionProgress): bigint | undefined {
  const first = progress.inFlight.keys().next()
  return first.done ? undefined : first.value
}

/** PostgreSQL refused the data itself (SQLSTATE class 22 data exception, 23 constraint violation): retrying cannot help. */
function isRefusedByDatabase(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}

/** Creates the verifier. */
export function createOrderVerifier(deps: OrderVerifierDeps, options: OrderVerifierOptions): OrderVerifier {
  const { consumer, producer, db, redis, prices, client } = deps
  const { topic, timeoutMs, callbacks } = options
  const log = deps.log.child({ component: 'verifier', topic })
  const maxInFlight = options.maxInFlight ?? 5000
  const commitIntervalMs = options.commitIntervalMs ?? 200
  const shutdownGraceMs = options.shutdownGraceMs ?? 5000
  const retryBaseMs = options.retryBaseMs ?? 100
  const retryMaxMs = options.retryMaxMs ?? 5000
  const stats: OrderVerifierStats = {
    received: 0,
    verified: 0,
    failed: 0,
    timeouts: 0,
    filled: 0,
    rejected: 0,
    replayed: 0,
    inFlight: 0,
    deadLettered: 0,
    commits: 0,
  }
  const progressByPartition = new Map<number, PartitionProgress>()
  /**
   * Progress replaced by a rewind or taken away by a rebalance, while some of its orders
   * are still in flight: until they finish, no commit of that partition passes them
   * (the partition may come back to this instance before they do).
   */
  const detached = new Set<PartitionProgress>()
  const detach = (progress: PartitionProgress) => {
    if (progressByPartition.get(progress.partition) === progress) progressByPartition.delete(progress.partition)
    if (progress.inFlight.size > 0) detached.add(progress)
  }
  /** Orders being processed, by id: a second copy of an order waits for the first instead of verifying again. */
  const ordersInFlight = new Map<string, Promise<void>>()
  /** Aborted when the shutdown stops waiting: every retry loop and verification gives up. */
  const abandon = new AbortController()
  const tasks = new Set<Promise<void>>()
  let slotFreed: (() => void) | undefined
  const finisher = createOrderFinisher(db, callbacks, options.finishing)

  /** Runs `fn` until it succeeds, backing off; gives up only when abandoned or when `isPermanent(err)`. */
  const retrying = async <T>(what: string, orderId: string, fn: () => Promise<T>, isPermanent?: (err: unknown) => boolean) => {
    for (let n = 1; ; n++) {
      if (abandon.signal.aborted) throw new AbandonedError(what)
      try {
        return await fn()
      } catch (err) {
        if (isPermanent?.(err)) throw err
        if (abandon.signal.aborted) throw new AbandonedError(what)
        // Thousands of orders fail together when PostgreSQL or Redis is down: a warning
        // on the first failure and every tenth, the rest at debug.
        const level = n === 1 || n % 10 === 0 ? 'warn' : 'debug'
        log[level]({ err, orderId, attempt: n }, `${what} failed, retrying`)
        const backoff = Math.min(retryMaxMs, retryBaseMs * 2 ** (n - 1))
        try {
          await sleep(backoff / 2 + Math.random() * (backoff / 2), undefined, { signal: abandon.signal })
        } catch {
          throw new AbandonedError(what)
        }
      }
    }
  }

  const deadLetter = async (message: StringMessage, reason: string) => {
    await retrying('dead-lettering', message.key ?? '', () =>
      producer.send({
        messages: [
          {
            topic: options.deadLetterTopic,
            key: message.key ?? '',
            value: message.value ?? '',
            headers: {
              'bourse-error': reason,
              'bourse-source-topic': message.topic,
              'bourse-source-partition': String(message.partition),
              'bourse-source-offset': message.offset.toString(),
            },
          },
        ],
      }),
    )
    stats.deadLettered++
    log.warn({ partition: message.partition, offset: message.offset.toString(), reason }, 'dead-lettered order message')
  }

  /**
   * Users whose projection is being written, with the row to write after it (the newest of
   * those that came meanwhile): one write per user at a time, however many of its orders
   * finish together. Each caller resolves once its row, or a newer one, was written.
   */
  const projecting = new Map<string, { user: UserRow; orderId: string; done: PromiseWithResolvers<void> } | null>()
  const project = (user: UserRow, orderId: string): Promise<void> => {
    if (projecting.has(user.id)) {
      const next = projecting.get(user.id)
      if (!next) {
        const done = Promise.withResolvers<void>()
        projecting.set(user.id, { user, orderId, done })
        return done.promise
      }
      if (BigInt(user.version) > BigInt(next.user.version)) next.user = user
      return next.done.promise
    }
    projecting.set(user.id, null)
    const write = async (row: UserRow, id: string): Promise<void> => {
      try {
        await retrying('projecting user', id, () => projectUser(redis, row))
      } finally {
        const next = projecting.get(row.id)
        if (next) {
          projecting.set(row.id, null)
          write(next.user, next.orderId).then(next.done.resolve, next.done.reject)
        } else {
          projecting.delete(row.id)
        }
      }
    }
    return write(user, orderId)
  }

  /**
   * The price reads asked for in one turn of the event loop share one Redis call, sent
   * after all of them were asked: each order still gets a price read after its
   * verification ended, and a burst of verifications ending together costs one read.
   */
  const readPrice = createTurnLoader((stocks) => prices.readLatestPrices(stocks))

  /** Projects the user (after a fill) and publishes the final state: what the user sees. */
  const afterFinal = async (order: OrderRow, user: UserRow | undefined) => {
    if (user) await project(user, order.id)
    await retrying('publishing status', order.id, () => publishOrderStatus(redis, orderView(order)))
  }

  /**
   * The order is final already (a replay after a crash, or a second copy): its projection
   * and status may not have been written before the crash, so write them again from
   * PostgreSQL's current rows (the projection keeps the newest version).
   */
  const replayFinal = async (orderId: string) => {
    stats.replayed++
    const order = await retrying('reading order', orderId, () => findOrder(db, orderId))
    if (!order) {
      log.warn({ orderId }, 'order vanished (its user was deleted?)')
      return
    }
    const user = order.status === 'filled' ? await retrying('reading user', orderId, () => findUser(db, order.user_id)) : undefined
    await afterFinal(order, user)
  }

  const verifyOrder = async (order: OrderMessage, message: StringMessage) => {
    try {
      await retrying('inserting order', order.id, () => insertOrder(db, orderRowFromMessage(order)), isRefusedByDatabase)
    } catch (err) {
      if (!isRefusedByDatabase(err)) throw err
      // 23503 (foreign key): the user does not exist. The API checks it before sending,
      // so this message did not come from it.
      await deadLetter(message, `order refused by the database: ${(err as Error).message}`)
      return
    }
    const started = await retrying('starting verification', order.id, () => startVerification(db, order.id))
    if (!started) {
      await replayFinal(order.id)
      return
    }
    // Best effort, not retried: a lost "verifying" costs nothing (the final state follows and
    // a stream reads the stored state when it subscribes), a retry would eat into the deadline.
    const verifying = publishOrderStatus(redis, orderView(started)).catch((err: unknown) =>
      log.warn({ err, orderId: order.id }, 'publishing verifying status failed'),
    )
    // From the first start, not this one: an order verified again after a restart keeps
    // its deadline, and one past it is rejected at once.
    const deadline = (started.verification_started_at ?? new Date()).getTime() + timeoutMs
    let result: VerificationResult
    try {
      result = deadline <= Date.now()
        ? 'timeout'
        : await client.verify({ orderId: order.id, user: order.user }, deadline, { signal: abandon.signal })
    } catch (err) {
      if (abandon.signal.aborted) throw new AbandonedError('verifying')
      throw err
    }
    let outcome: VerificationOutcome
    if (result === 'verified') {
      stats.verified++
      const price = await retrying('reading price', order.id, () => readPrice(order.stock))
      outcome = { verified: true, price }
    } else {
      if (result === 'timeout') stats.timeouts++
      else stats.failed++
      outcome = { verified: false, reason: result === 'timeout' ? 'verification_timeout' : 'verification_failed' }
    }
    const finished = await retrying('finishing order', order.id, () => finisher.finish(order.id, outcome))
    await verifying
    if (!finished.changed) {
      await replayFinal(order.id)
      return
    }
    if (finished.order.status === 'filled') stats.filled++
    else stats.rejected++
    await afterFinal(finished.order, finished.user)
  }

  const processMessage = async (message: StringMessage) => {
    let order: OrderMessage
    try {
      order = decodeOrderMessage(message.value ?? '')
    } catch (err) {
      await deadLetter(message, (err as Error).message)
      return
    }
    const running = ordersInFlight.get(order.id)
    if (running) {
      await running
      return
    }
    const work = verifyOrder(order, message)
    ordersInFlight.set(order.id, work)
    try {
      await work
    } finally {
      if (ordersInFlight.get(order.id) === work) ordersInFlight.delete(order.id)
    }
  }

  /** Registers a message as in flight in its partition. */
  const track = (message: StringMessage): PartitionProgress => {
    let progress = progressByPartition.get(message.partition)
    // An offset at or below one already received: the stream went back to the committed
    // offset (a rebalance). What was tracked is superseded; the orders come again.
    if (progress && message.offset <= progress.lastReceived) {
      detach(progress)
      progress = undefined
    }
    if (!progress) {
      progress = {
        partition: message.partition,
        inFlight: new Map(),
        lastReceived: message.offset,
        lastEpoch: message.leaderEpoch,
        committed: undefined,
      }
      progressByPartition.set(message.partition, progress)
    }
    progress.inFlight.set(message.offset, message.leaderEpoch)
    progress.lastReceived = message.offset
    progress.lastEpoch = message.leaderEpoch
    return progress
  }

  const start = (message: StringMessage) => {
    stats.received++
    stats.inFlight++
    const progress = track(message)
    const task = processMessage(message).then(
      () => {
        progress.inFlight.delete(message.offset)
        if (progress.inFlight.size === 0) detached.delete(progress)
      },
      (err: unknown) => {
        if (err instanceof AbandonedError) return
        // Not a PostgreSQL/Redis/Kafka outage (those are retried): a bug. The order stays
        // uncommitted, so it is processed again after a restart.
        log.error({ err, partition: message.partition, offset: message.offset.toString() }, 'order processing failed')
      },
    )
    const tracked = task.finally(() => {
      stats.inFlight--
      tasks.delete(tracked)
      slotFreed?.()
    })
    tasks.add(tracked)
  }

  /** Commits, per assigned partition, how far every order is finished. */
  const commitFinished = async (): Promise<void> => {
    try {
      // Mid-rebalance a commit fails and makes the client rejoin; wait for the group.
      if (!consumer.isActive()) return
      const assigned = new Set(consumer.assignments?.find((a) => a.topic === topic)?.partitions ?? [])
      const offsets: Array<{ progress: PartitionProgress; offset: bigint; leaderEpoch: number }> = []
      for (const progress of progressByPartition.values()) {
        if (!assigned.has(progress.partition)) continue
        const target = commitTarget(progress)
        for (const old of detached) {
          const lowest = old.partition === progress.partition ? lowestInFlight(old) : undefined
          if (lowest !== undefined && lowest < target.offset) target.offset = lowest
        }
        if (progress.committed === undefined || target.offset > progress.committed) offsets.push({ progress, ...target })
      }
      if (offsets.length === 0) return
      await consumer.commit({
        offsets: offsets.map(({ progress, offset, leaderEpoch }) => ({ topic, partition: progress.partition, offset, leaderEpoch })),
      })
      stats.commits++
      for (const { progress, offset } of offsets) {
        if (progress.committed === undefined || offset > progress.committed) progress.committed = offset
      }
    } catch (err) {
      // The offsets stay where they were; the next tick commits them.
      log.warn({ err }, 'committing offsets failed')
    }
  }
  let committing: Promise<void> | undefined
  /** One commit at a time: two in flight could land out of order and move an offset back. */
  const commit = (): Promise<void> => {
    committing ??= commitFinished().finally(() => {
      committing = undefined
    })
    return committing
  }

  /** Waits until every task settled or `ms` passed; true if all settled. */
  const settle = async (ms: number): Promise<boolean> => {
    if (tasks.size === 0) return true
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms)
    })
    const all = Promise.allSettled([...tasks]).then(() => true)
    const settled = await Promise.race([all, timedOut])
    clearTimeout(timer)
    return settled
  }

  return {
    stats,
    async run(signal) {
      // Partitions taken away by a rebalance are no longer ours to commit.
      const onJoin = (payload: { assignments?: Array<{ topic: string; partitions: number[] }> }) => {
        const assigned = new Set(payload.assignments?.find((a) => a.topic === topic)?.partitions ?? [])
        for (const progress of [...progressByPartition.values()]) {
          if (!assigned.has(progress.partition)) detach(progress)
        }
      }
      consumer.on('consumer:group:join', onJoin)
      let stream: StringStream
      try {
        stream = await consumer.consume({
          topics: [topic],
          mode: MessagesStreamModes.COMMITTED,
          fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        })
      } catch (err) {
        consumer.off('consumer:group:join', onJoin)
        throw err
      }
      const commitTimer = setInterval(() => void commit(), commitIntervalMs)
      const iterator = stream[Symbol.asyncIterator]()
      let pending: Promise<IteratorResult<StringMessage>> | undefined
      const stopped = new Promise<'stopped'>((resolve) => {
        if (signal.aborted) resolve('stopped')
        else signal.addEventListener('abort', () => resolve('stopped'), { once: true })
      })
      log.info({ maxInFlight, timeoutMs }, 'consuming')
      try {
        while (!signal.aborted) {
          if (stats.inFlight >= maxInFlight) {
            // Full: pull nothing more until an order finishes (the stream stops fetching
            // once its buffer reaches the high-water mark).
            const freed = new Promise<void>((resolve) => {
              slotFreed = resolve
            })
            await Promise.race([freed, stopped])
            slotFreed = undefined
            continue
          }
          pending ??= iterator.next()
          const next = await Promise.race([pending, stopped])
          if (next === 'stopped') break
          pending = undefined
          if (next.done) break
          start(next.value)
          // What is already buffered is taken without a promise per message.
          while (stats.inFlight < maxInFlight && !signal.aborted) {
            const message = stream.read() as StringMessage | null
            if (message === null) break
            start(message)
          }
        }
      } finally {
        if (!(await settle(shutdownGraceMs))) {
          log.warn({ inFlight: stats.inFlight }, 'abandoning orders still verifying; they are verified again after a restart')
          abandon.abort()
          await settle(1000)
        }
        clearInterval(commitTimer)
        await committing
        await commit()
        consumer.off('consumer:group:join', onJoin)
        await stream.close().catch((err: unknown) => log.warn({ err }, 'closing stream failed'))
      }
      log.info({ ...stats }, 'stopped')
      return { ...stats }
    },
  }
}
