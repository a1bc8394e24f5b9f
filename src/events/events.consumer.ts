/**
 * The events worker (The Eye): consumes accepted events from Kafka in batches, validates
 * each against the registry, and stores it in PostgreSQL: valid events in `events`,
 * invalid ones with every reason in `event_errors`. Nothing is left hanging: a message
 * that cannot even be decoded goes to the dead-letter topic with the reason.
 *
 * A message carries one event (version 1) or the events of one intake request (version
 * 2, see `event-message.ts`); batches, transactions and the dedup below work on events.
 *
 * Each event exactly once, across crashes: a batch is written in one transaction, then
 * its offsets are committed to Kafka. A crash between the two replays the batch, and the
 * replay changes nothing, because the event id is the key of both tables
 * (`on conflict (id) do nothing`) and an id already in the other table is skipped. The
 * second rule matters when the registry changed between the crash and the replay: the
 * event would now be judged differently, and without it would land in both tables.
 * Worker transactions take one advisory lock, so two instances judging the same id at
 * once (during a rebalance) cannot both miss the other's row.
 *
 * Order: not kept, and not needed: the intake spreads messages over the partitions (one
 * session's events may be stored in any order), and readers order a session by
 * `occurred_at` (indexed), which they would have to anyway since applications may send late.
 *
 * PostgreSQL unavailable: the batch is retried with backoff until it is stored (or the
 * worker stops); offsets past it are never committed.
 */
import { setImmediate as setImmediatePromise } from 'node:timers/promises'
import type { Registry } from 'prom-client'
import type { Db } from '../database.ts'
import {
  createBatchReader,
  createTopicConsumer,
  type DeadLetter,
  partitionBounds,
  type StringConsumer,
  type StringMessage,
  type StringProducer,
  takeBatch,
} from '../platform/kafka/index.ts'
import type { Logger } from '../platform/logger.ts'
import { isPermanent, retry, RetryAbortedError } from '../platform/retry.ts'
import { type AcceptedEvent, decodeEventMessage, encodeEventMessage } from './event-message.ts'
import { type Classified, copyLines, type ErrorRecord, type EventRecord, storeRecords } from './events.store.ts'
import { createEventTypeCache, type EventTypeCache } from './event-types.repository.ts'
import { parseEventTimestamp, type UnknownTypePolicy, validateEvent } from './event-validation.ts'

/** Dependencies of the events worker. */
export interface EventsWorkerDeps {
  consumer: StringConsumer
  /** Sends undecodable messages (and events PostgreSQL refuses) to the dead-letter topic. */
  producer: StringProducer
  db: Db
  log: Logger
  /** The registered event types. @defaultValue createEventTypeCache(db), refreshed every 5 s */
  registry?: Pick<EventTypeCache, 'get'>
  /** Where the consumer's counters are registered. @defaultValue none */
  metrics?: Registry
}

/** Options of the events worker. */
export interface EventsWorkerOptions {
  /** The events topic. */
  topic: string
  /** Where undecodable messages go, with the reason in the `bourse-error` header. */
  deadLetterTopic: string
  /**
   * Most events validated and written in one transaction: a batch of messages ends once it
   * holds this many events (a message of many events may carry it over, by less than one
   * intake request: at most 500 events).
   */
  batchSize: number
  /** What to do with an event whose type has no schema: `store` it unvalidated, or `reject` it. */
  unknownType: UnknownTypePolicy
  /** How far in the future a timestamp may be before the event is an error, in ms. */
  futureToleranceMs: number
  /** How long a batch that is not full waits for more messages before it is written, in ms. @defaultValue 50 */
  lingerMs?: number
  /** Quiet time after which the worker counts as idle (and, with `untilIdle`, checks whether it is done), in ms. @defaultValue 500 */
  idleMs?: number
  /** Stop once the group has committed every partition up to its end. @defaultValue false */
  untilIdle?: boolean
  /** Ceiling of the first delay before retrying a batch PostgreSQL or Kafka failed; doubles per attempt. @defaultValue 100 */
  retryBaseMs?: number
  /** Longest delay between two attempts of a batch, in ms. @defaultValue 5000 */
  retryMaxMs?: number
}

/** Running totals, for progress output and tests. */
export interface EventsWorkerStats {
  /** Batches written. */
  batches: number
  /** Messages taken from Kafka. */
  received: number
  /** Events in the messages taken (a version 2 message holds several). */
  events: number
  /** Rows inserted into `events`. */
  stored: number
  /** Rows inserted into `event_errors`. */
  rejected: number
  /** Events not inserted because their id was stored already (a replay or a resent event). */
  duplicates: number
  /** Messages sent to the dead-letter topic. */
  deadLettered: number
  /** Attempts of a batch that failed and were retried. */
  retries: number
  /** Offset commits sent to Kafka. */
  commits: number
}

/** The running worker. */
export interface EventsWorker {
  /**
   * Consumes until `signal` aborts (the batch in hand is finished and committed first)
   * or, with `untilIdle`, until caught up. Rejects when the Kafka stream fails.
   */
  run(signal: AbortSignal): Promise<EventsWorkerStats>
  readonly stats: Readonly<EventsWorkerStats>
}

/** Events judged between two turns of the event loop. */
const CLASSIFY_SLICE = 100

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** An event of the batch and the message that carried it. */
interface Item {
  message: StringMessage
  event: AcceptedEvent
}

/** A message read from the topic, decoded; `error` when it cannot be. */
type DecodedMessage = { message: StringMessage; events: AcceptedEvent[]; error?: undefined } | { message: StringMessage; error: string }

/** Decodes a message; never throws. */
function decodeMessage(message: StringMessage): DecodedMessage {
  try {
    const events = decodeEventMessage(message.value ?? '')
    if (!uuidPattern.test(events[0]!.app_id)) throw new Error('event message has an app_id that is not a UUID')
    return { message, events }
  } catch (err) {
    return { message, error: (err as Error).message }
  }
}

/** The intake writes `received_at` as ISO 8601; anything else `Date.parse` reads is normalized (to the ms). */
function receivedAtText(value: string): string {
  const parsed = parseEventTimestamp(value)
  return parsed.ok ? parsed.text : new Date(Date.parse(value)).toISOString()
}

const textOrNull = (value: unknown): string | null => (typeof value === 'string' ? value : null)

/** A batch ready to store, see `prepareBatch`. */
interface PreparedBatch {
  poison: DeadLetter[]
  items: Item[]
  judged: Classified | undefined
}

/** A message counts as its events (an undecodable one as one). */
const eventWeight = (decoded: DecodedMessage) => (decoded.error === undefined ? decoded.events.length : 1)

/** Creates the events worker. */
export function createEventsWorker(deps: EventsWorkerDeps, options: EventsWorkerOptions): EventsWorker {
  const { consumer, producer, db } = deps
  const { topic, deadLetterTopic, batchSize, unknownType, futureToleranceMs } = options
  const log = deps.log.child({ component: 'events-worker', topic })
  const registry = deps.registry ?? createEventTypeCache(db)
  const lingerMs = options.lingerMs ?? 50
  const idleMs = options.idleMs ?? 500
  const stats: EventsWorkerStats = {
    batches: 0,
    received: 0,
    events: 0,
    stored: 0,
    rejected: 0,
    duplicates: 0,
    deadLettered: 0,
    retries: 0,
    commits: 0,
  }
  const kafka = createTopicConsumer(
    {
      consumer,
      producer,
      log,
      metrics: deps.metrics,
      onDeadLetterRetry: () => {
        stats.retries++
      },
    },
    { topic, deadLetterTopic, retryBaseMs: options.retryBaseMs, retryMaxMs: options.retryMaxMs },
  )
  /** The tracker knows which offsets are stored in PostgreSQL, for the commits. */
  const { metrics, deadLetter, tracker } = kafka

  /**
   * Runs `fn` until it succeeds, backing off; gives up only when the worker stops (a
   * `RetryAbortedError`) or when `isPermanent(err)`.
   */
  const retrying = <T>(what: string, signal: AbortSignal, fn: () => Promise<T>, permanent?: (err: unknown) => boolean) =>
    retry(fn, {
      what,
      signal,
      log,
      ...kafka.backoff,
      ...(permanent && { isPermanent: permanent }),
      onRetry: () => {
        stats.retries++
        metrics.retry()
      },
    })

  /** Judges the items against the registry as it is now. */
  const classify = async (items: Item[]): Promise<Classified> => {
    const types = await registry.get()
    const now = Date.now()
    const events: EventRecord[] = []
    const errors: ErrorRecord[] = []
    // The events of a version 2 message share one received_at: parsed once (it was 15% of
    // the worker's CPU, measured with bench/events.bench.ts).
    let receivedAtRaw: string | undefined
    let received_at = ''
    for (const [index, item] of items.entries()) {
      // Judging a batch takes milliseconds: the event loop is let go every so often, so
      // the answers of the batch PostgreSQL is storing meanwhile are read without waiting.
      if (index % CLASSIFY_SLICE === CLASSIFY_SLICE - 1) await setImmediatePromise()
      const { id, app_id, event } = item.event
      if (item.event.received_at !== receivedAtRaw) {
        receivedAtRaw = item.event.received_at
        received_at = receivedAtText(receivedAtRaw)
      }
      const verdict = validateEvent(event as unknown, types, { unknownType, futureToleranceMs, now })
      if (verdict.ok) {
        events.push({
          id,
          app_id,
          session_id: event.session_id,
          category: event.category,
          name: event.name,
          data: event.data,
          occurred_at: verdict.occurredAtText,
          received_at,
          validated: verdict.validated,
        })
      } else {
        const raw = event as unknown as Record<string, unknown>
        errors.push({
          id,
          app_id,
          session_id: textOrNull(raw.session_id),
          category: textOrNull(raw.category),
          name: textOrNull(raw.name),
          raw: event,
          reasons: verdict.reasons,
          received_at,
        })
      }
    }
    const eventsCopy = copyLines(events)
    return { count: items.length, ids: items.map((item) => item.event.id), events, eventsCopy, errors: JSON.stringify(errors) }
  }

  /**
   * Stores the items; those PostgreSQL refuses (an unknown app, text it cannot hold such
   * as `\u0000`) are found by halving the batch and returned, each as a version 1 message
   * of that event alone (its message's other events are stored), so one bad event does
   * not block the partition. The halves are committed separately: harmless, since a replay of
   * any of them changes nothing. `judged` is the items' classification made while the
   * batch before was stored; a retry judges them again, against the registry as it is then.
   */
  const storeItems = async (items: Item[], signal: AbortSignal, judged?: Classified): Promise<DeadLetter[]> => {
    let refusal: unknown
    let first = judged
    try {
      await retrying(
        'storing events',
        signal,
        async () => {
          const judgedNow = first ?? (await classify(items))
          first = undefined
          const result = await storeRecords(db, judgedNow)
          stats.stored += result.stored
          stats.rejected += result.rejected
          stats.duplicates += judgedNow.count - result.stored - result.rejected
        },
        isPermanent,
      )
      return []
    } catch (err) {
      if (!isPermanent(err)) throw err
      refusal = err
    }
    if (items.length === 1) {
      const { message, event } = items[0]!
      const key = textOrNull((event.event as unknown as Record<string, unknown>).session_id) ?? ''
      return [{ message, key, value: encodeEventMessage(event), reason: `refused by PostgreSQL: ${(refusal as Error).message}` }]
    }
    const half = Math.ceil(items.length / 2)
    return [...(await storeItems(items.slice(0, half), signal)), ...(await storeItems(items.slice(half), signal))]
  }

  /**
   * A batch made ready to store: undecodable messages apart, repeated ids dropped, the
   * events judged (unless the registry could not be read: then the store judges them, retrying).
   */
  const prepareBatch = async (batch: DecodedMessage[]): Promise<PreparedBatch> => {
    stats.received += batch.length
    const poison: DeadLetter[] = []
    const items: Item[] = []
    const ids = new Set<string>()
    for (const decoded of batch) {
      const { message } = decoded
      if (decoded.error !== undefined) {
        poison.push({ message, reason: decoded.error })
        continue
      }
      stats.events += decoded.events.length
      for (const event of decoded.events) {
        // The same event twice in one batch (a client's retry): the first one counts. Ids
        // are compared as PostgreSQL's uuid does, whatever the case of their hex digits.
        const key = event.id.toLowerCase()
        if (ids.has(key)) {
          stats.duplicates++
          continue
        }
        ids.add(key)
        items.push({ message, event })
      }
    }
    let judged: Classified | undefined
    try {
      if (items.length > 0) judged = await classify(items)
    } catch (err) {
      log.warn({ err }, 'event types not read; judged when the batch is stored')
    }
    return { poison, items, judged }
  }

  const writeBatch = async ({ poison, items, judged }: PreparedBatch, signal: AbortSignal) => {
    // Dead letters first: a crash after this sends them again (at least once there), never
    // loses them. A failed send is retried until it succeeds or the worker stops.
    await deadLetter(poison, signal)
    stats.deadLettered += poison.length
    if (items.length > 0) {
      const refused = await storeItems(items, signal, judged)
      await deadLetter(refused, signal)
      stats.deadLettered += refused.length
    }
    stats.batches++
    metrics.batch()
  }

  /** True when the group has committed every partition of the topic up to its end. */
  const caughtUp = async () => {
    const bounds = await partitionBounds(consumer, topic)
    const committed = await consumer.listCommittedOffsets({ topics: [{ topic, partitions: bounds.map((b) => b.partition) }] })
    const offsets = committed.get(topic) ?? []
    return bounds.every(({ partition, start, end }) => end <= start || (offsets[partition] ?? -1n) >= end)
  }

  const positionOf = (decoded: DecodedMessage) => decoded.message

  return {
    stats,
    async run(signal) {
      const session = await kafka.open()
      const commit = async () => {
        if (await session.commit()) stats.commits++
      }
      const nextBatch = createBatchReader(session.stream, { maxBatch: batchSize, decode: decodeMessage, weight: eventWeight, lingerMs, idleMs })
      // The latest offset commit, not awaited before the next batch's store: the committer
      // runs one at a time and never throws (a failure is logged and left for the next).
      let committing: Promise<void> = Promise.resolve()
      /**
       * Stores a batch, then tracks its offsets and queues their commit: one batch at a
       * time, so that a worker stopped mid-batch commits nothing of it (not even its first
       * offset). Resolves to false when the worker stopped while PostgreSQL or Kafka was
       * failing: the batch stays uncommitted and is processed again after a restart.
       */
      const store = async (batch: DecodedMessage[], prepared: PreparedBatch): Promise<boolean> => {
        metrics.messages(batch.length)
        metrics.inFlight(batch.length)
        try {
          await writeBatch(prepared, signal)
        } catch (err) {
          if (err instanceof RetryAbortedError) return false
          throw err
        } finally {
          metrics.inFlight(0)
        }
        for (const range of takeBatch(tracker, batch, positionOf)) range.finish()
        committing = commit()
        return true
      }
      // While PostgreSQL stores a batch, the next one is read from Kafka, decoded and judged
      // (one after the other, PostgreSQL sat idle while the worker did that, and the worker
      // while PostgreSQL stored; measured with bench/events.bench.ts).
      let storing: Promise<boolean> | undefined
      const stored = async () => {
        const ok = storing === undefined || (await storing)
        storing = undefined
        await committing
        return ok
      }
      log.info({ batchSize, unknownType, futureToleranceMs }, 'consuming')
      try {
        for (;;) {
          const batch = await nextBatch(signal)
          if (batch === 'stopped') break
          if (batch === 'idle') {
            if (!(await stored())) break
            await commit()
            if (options.untilIdle && (await caughtUp())) {
              log.info({ ...stats }, 'caught up')
              break
            }
            continue
          }
          const prepared = await prepareBatch(batch)
          if (storing && !(await storing)) break
          storing = store(batch, prepared)
          // Not left unhandled while the next batch is read; awaited (and thrown) above or below.
          storing.catch(() => {})
          if (signal.aborted) break
        }
      } finally {
        // The batch in hand is finished (or left uncommitted if its store cannot finish).
        try {
          await stored()
        } finally {
          await commit()
          await session.close()
        }
      }
      log.info({ ...stats }, 'stopped')
      return { ...stats }
    },
  }
}
