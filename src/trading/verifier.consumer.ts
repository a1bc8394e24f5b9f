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
import type { Registry } from 'prom-client'
import type { Db } from '../database.ts'
import type { OrderRow, UserRow } from './db/tables.ts'
import {
  createBatchReader,
  createTopicConsumer,
  type StringConsumer,
  type StringMessage,
  type StringProducer,
} from '../platform/kafka/index.ts'
import type { Logger } from '../platform/logger.ts'
import { histogramOn } from '../platform/metrics.ts'
import { isPermanent, retry, RetryAbortedError } from '../platform/retry.ts'
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
  /** Where the consumer's counters are registered. @defaultValue none */
  metrics?: Registry
  /** The clock of verification deadlines, epoch ms (tests move it instead of waiting). @defaultValue Date.now */
  now?: () => number
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
  /** Ceiling of the first delay before retrying an order after a PostgreSQL, Redis or Kafka error; doubles per attempt. @defaultValue 100 */
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

/** Creates the verifier. */
export function createOrderVerifier(deps: OrderVerifierDeps, options: OrderVerifierOptions): OrderVerifier {
  const { consumer, producer, db, redis, prices, client } = deps
  const { topic, timeoutMs, callbacks } = options
  const log = deps.log.child({ component: 'verifier', topic })
  const maxInFlight = options.maxInFlight ?? 5000
  const commitIntervalMs = options.commitIntervalMs ?? 200
  const shutdownGraceMs = options.shutdownGraceMs ?? 5000
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
  const now = deps.now ?? Date.now
  const kafka = createTopicConsumer(
    { consumer, producer, log, metrics: deps.metrics },
    { topic, deadLetterTopic: options.deadLetterTopic, retryBaseMs: options.retryBaseMs, retryMaxMs: options.retryMaxMs },
  )
  /**
   * The tracker holds the offsets of the orders in flight, per partition: a rewind or a
   * partition taken away starts its tracking over, and the superseded orders still in
   * flight keep commits of that partition from passing them (see platform/kafka/offsets.ts).
   */
  const { metrics, tracker } = kafka
  /** How long the external API took to answer, by result (a timeout is the whole wait). */
  const verificationSeconds = histogramOn(deps.metrics, {
    name: 'bourse_verification_duration_seconds',
    help: 'Time the external verification API took, from the request to its answer or the deadline, by result',
    labelNames: ['result'],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120],
  })
  /** Orders being processed, by id: a second copy of an order waits for the first instead of verifying again. */
  const ordersInFlight = new Map<string, Promise<void>>()
  /** Aborted when the shutdown stops waiting: every retry loop and verification gives up. */
  const abandon = new AbortController()
  const tasks = new Set<Promise<void>>()
  let slotFreed: (() => void) | undefined
  const finisher = createOrderFinisher(db, callbacks, options.finishing)

  /** Runs `fn` until it succeeds, backing off; gives up only when abandoned or when `permanent(err)`. */
  const retrying = async <T>(what: string, orderId: string, fn: () => Promise<T>, permanent?: (err: unknown) => boolean) => {
    if (abandon.signal.aborted) throw new AbandonedError(what)
    try {
      return await retry(fn, {
        what,
        signal: abandon.signal,
        log,
        context: { orderId },
        ...kafka.backoff,
        ...(permanent && { isPermanent: permanent }),
        onRetry: () => metrics.retry(),
      })
    } catch (err) {
      if (err instanceof RetryAbortedError) throw new AbandonedError(what, { cause: err.cause })
      throw err
    }
  }

  /** Dead-letters one message, retrying a failed send until it succeeds or the shutdown gives up. */
  const deadLetter = async (message: StringMessage, reason: string) => {
    try {
      await kafka.deadLetter([{ message, reason }], abandon.signal)
    } catch (err) {
      if (err instanceof RetryAbortedError) throw new AbandonedError('dead-lettering', { cause: err.cause })
      throw err
    }
    stats.deadLettered++
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
      await retrying('inserting order', order.id, () => insertOrder(db, orderRowFromMessage(order)), isPermanent)
    } catch (err) {
      if (!isPermanent(err)) throw err
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
    const deadline = (started.verification_started_at?.getTime() ?? now()) + timeoutMs
    let result: VerificationResult
    try {
      // The client waits on the wall clock: it gets the time left by our clock.
      const remaining = deadline - now()
      const asked = now()
      result = remaining <= 0
        ? 'timeout'
        : await client.verify({ orderId: order.id, user: order.user }, Date.now() + remaining, { signal: abandon.signal })
      if (remaining > 0) verificationSeconds?.observe({ result }, (now() - asked) / 1000)
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

  const start = (message: StringMessage) => {
    stats.received++
    stats.inFlight++
    const taken = tracker.take(message.partition, message.offset, message.offset, message.leaderEpoch)
    const task = processMessage(message).then(
      () => taken.finish(),
      (err: unknown) => {
        if (err instanceof AbandonedError) return
        // Not a PostgreSQL/Redis/Kafka outage (those are retried): a bug. The order stays
        // uncommitted, so it is processed again after a restart.
        log.error({ err, partition: message.partition, offset: message.offset.toString() }, 'order processing failed')
      },
    )
    const tracked = task.finally(() => {
      stats.inFlight--
      metrics.inFlight(stats.inFlight)
      tasks.delete(tracked)
      slotFreed?.()
    })
    tasks.add(tracked)
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
      // From here on the committer follows the group: partitions taken away by a rebalance
      // are no longer ours to commit.
      const session = await kafka.open()
      /** Commits, per assigned partition, how far every order is finished. */
      const commit = async () => {
        if (await session.commit()) stats.commits++
      }
      const commitTimer = setInterval(() => void commit(), commitIntervalMs)
      const nextMessages = createBatchReader(session.stream, { maxBatch: maxInFlight })
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
          // What is buffered, up to the free slots, without a promise per message.
          const messages = await nextMessages(signal, maxInFlight - stats.inFlight)
          if (messages === 'stopped') break
          if (messages === 'idle') continue
          metrics.messages(messages.length)
          metrics.batch()
          for (const message of messages) start(message)
          metrics.inFlight(stats.inFlight)
        }
      } finally {
        if (!(await settle(shutdownGraceMs))) {
          log.warn({ inFlight: stats.inFlight }, 'abandoning orders still verifying; they are verified again after a restart')
          abandon.abort()
          await settle(1000)
        }
        clearInterval(commitTimer)
        await commit()
        await session.close()
      }
      log.info({ ...stats }, 'stopped')
      return { ...stats }
    },
  }
}
