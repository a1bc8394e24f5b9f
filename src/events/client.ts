/**
 * A typed client for applications sending events to The Eye (`POST /api/events`).
 *
 * `track()` checks an event against the intake's own schema at once (a bad event is the
 * caller's bug: it throws, nothing is queued), gives it an id when it has none, and
 * queues it. Queued events leave in batches: when `batchSize` are waiting, or
 * `flushIntervalMs` after the first one, or on `flush()` / `close()`.
 *
 * Delivery is at least once, and the ids make it exactly once in storage: an event's id
 * is fixed when it is tracked, so a batch retried after a lost answer (a timeout, a
 * dropped connection, a 503 after the broker took it) is stored once by the worker.
 * Retried: network errors, timeouts, 429 (after its Retry-After), 502, 503 (after its
 * Retry-After, if any) and 504, with exponential backoff and full jitter, `maxRetries` times.
 * Never retried, because the same request would fail the same way: any other answer
 * (400, 401, 403, 413, ...). Those reject with an {@link EventsRejectedError} carrying
 * the server's code and details.
 */
import { randomUUID } from 'node:crypto'
import { Compile } from 'typebox/compile'
import { retry } from '../platform/retry.ts'
import { type IncomingEvent, IncomingEvent as IncomingEventSchema, MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST } from './events.schemas.ts'

/** Options of {@link createEventsClient}. */
export interface EventsClientOptions {
  /** Base URL of the Bourse API, e.g. `http://127.0.0.1:8000` (events go to `/api/events`). */
  url: string
  /** The application's token (`bourse apps create NAME`). */
  token: string
  /** Most events in one request (at most 500, the intake's limit). @defaultValue 100 */
  batchSize?: number
  /** Longest time an event waits in the queue before its batch is sent, in ms. @defaultValue 200 */
  flushIntervalMs?: number
  /** Retries of a batch after a retryable failure, before it is given up. @defaultValue 5 */
  maxRetries?: number
  /** Ceiling of the backoff before the first retry, in ms; it doubles per retry (full jitter). @defaultValue 100 */
  retryBaseMs?: number
  /** Longest backoff between two attempts, in ms (a longer Retry-After is still honoured). @defaultValue 10000 */
  retryMaxMs?: number
  /** Time allowed for one request, in ms; a request that takes longer is retried. @defaultValue 10000 */
  timeoutMs?: number
  /** Most bytes of JSON in one request; a batch is split before it grows past this. @defaultValue 1048576 */
  maxBatchBytes?: number
  /** Batches in flight at once. @defaultValue 4 */
  concurrency?: number
  /** Most events tracked but not yet delivered or given up; `track()` throws past it. @defaultValue 100000 */
  maxPending?: number
  /** Flush what is queued when the process is about to exit (`beforeExit`). @defaultValue true */
  flushOnExit?: boolean
  /**
   * Told of each batch given up that no `flush()` or `close()` caller receives (batches
   * sent by the timer or by a full batch). @defaultValue a process warning
   */
  onError?: (err: EventsClientError) => void
  /** The fetch implementation. @defaultValue globalThis.fetch */
  fetch?: typeof fetch
  /** Random numbers in [0, 1) for the jitter. @defaultValue Math.random */
  random?: () => number
}

/** Counters of a client, since it was created. */
export interface EventsClientStats {
  /** Events tracked and waiting for a batch. */
  queued: number
  /** Events in batches being sent (or waiting to retry). */
  inFlight: number
  /** Events the API accepted. */
  sent: number
  /** Events given up: refused by the API or out of retries. */
  failed: number
  /** Requests retried. */
  retries: number
  /** Requests that the API accepted. */
  batches: number
}

/** An event client; see {@link createEventsClient}. */
export interface EventsClient {
  /**
   * Checks an event and queues it; returns its id (its own, or a new one). Throws
   * {@link EventValidationError} for an event the API would refuse, and
   * {@link EventsClientError} after `close()` or when `maxPending` events wait.
   */
  track(event: IncomingEvent): string
  /**
   * Sends everything queued now and waits for every batch in flight. Rejects with the
   * error of a batch it sent that was given up (an `AggregateError` if several were).
   */
  flush(): Promise<void>
  /** Stops taking events, flushes, and forgets the exit hook. Idempotent: a second call returns the same promise. */
  close(): Promise<void>
  /** A snapshot of the counters. */
  readonly stats: EventsClientStats
}

/** Base of every error of the client, with a stable `code`. */
export class EventsClientError extends Error {
  override name = 'EventsClientError'
  /** `invalid_event`, `rejected`, `undelivered`, `closed` or `queue_full`. */
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** One problem of an event, as the API names it (`body[0].session_id`, ...). */
export interface EventFieldError {
  field: string
  message: string
}

/** `track()` was given an event the API would refuse. */
export class EventValidationError extends EventsClientError {
  override name = 'EventValidationError'
  /** Every problem found. */
  readonly details: EventFieldError[]
  constructor(details: EventFieldError[]) {
    super('invalid_event', `invalid event: ${details.map((d) => `${d.field} ${d.message}`).join('; ')}`)
    this.details = details
  }
}

/** The API refused a batch with an answer that a retry would not change (400, 401, 403, 413, ...). */
export class EventsRejectedError extends EventsClientError {
  override name = 'EventsRejectedError'
  /** The HTTP status. */
  readonly status: number
  /** The API's error code (`validation_failed`, `unauthorized`, ...), if it sent one. */
  readonly serverCode: string | undefined
  /** The API's `details` (for 400: the fields that are wrong), if it sent any. */
  readonly details: unknown
  /** The ids of the batch's events. */
  readonly eventIds: string[]
  constructor(status: number, body: unknown, eventIds: string[]) {
    const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error
    const serverCode = typeof error?.code === 'string' ? error.code : undefined
    const serverMessage = typeof error?.message === 'string' ? error.message : undefined
    const what = [String(status), serverCode].filter(Boolean).join(' ')
    super('rejected', `the API refused ${eventIds.length} events: ${what}${serverMessage ? `: ${serverMessage}` : ''}`)
    this.status = status
    this.serverCode = serverCode
    this.details = error?.details
    this.eventIds = eventIds
  }
}

/** A batch still failed (retryably) after every retry. */
export class EventsDeliveryError extends EventsClientError {
  override name = 'EventsDeliveryError'
  /** Requests made. */
  readonly attempts: number
  /** The last HTTP status, or undefined when the last attempt got no answer. */
  readonly status: number | undefined
  /** The ids of the batch's events. */
  readonly eventIds: string[]
  constructor(attempts: number, status: number | undefined, eventIds: string[], cause: unknown) {
    const last = status === undefined ? `no answer (${cause instanceof Error ? cause.message : String(cause)})` : `HTTP ${status}`
    super('undelivered', `${eventIds.length} events not delivered after ${attempts} attempts: ${last}`, { cause })
    this.attempts = attempts
    this.status = status
    this.eventIds = eventIds
  }
}

/** A failure a retry may fix: no answer, or an answer with a retryable status (`cause`), maybe with its Retry-After. */
class RetryableFailure extends Error {
  override name = 'RetryableFailure'
  readonly retryAfterMs: number | undefined
  constructor(cause: unknown, retryAfterMs: number | undefined) {
    super(cause instanceof Error ? cause.message : String(cause), { cause })
    this.retryAfterMs = retryAfterMs
  }
}

/** Statuses worth retrying: the request was fine, the server could not take it now. */
const RETRYABLE = new Set([429, 502, 503, 504])
/** Longest Retry-After honoured; a longer one is treated as this. */
const MAX_RETRY_AFTER_MS = 5 * 60_000

const checkEvent = Compile(IncomingEventSchema)

/** Each problem of an event, named like the API names body fields. */
function eventProblems(event: unknown): EventFieldError[] {
  const out: EventFieldError[] = []
  for (const error of checkEvent.Errors(event)) {
    // typebox reports an unknown field twice: once as `additionalProperties`, once per field.
    if (error.keyword === 'boolean') continue
    const field = `event${error.instancePath.split('/').slice(1).map((p) => `.${p}`).join('')}`
    let message = error.message
    const params = error.params as { additionalProperties?: unknown; requiredProperties?: unknown }
    if (error.keyword === 'additionalProperties' && Array.isArray(params.additionalProperties)) {
      for (const name of params.additionalProperties) out.push({ field: `${field}.${String(name)}`, message: 'is not allowed' })
      continue
    }
    if (error.keyword === 'required' && Array.isArray(params.requiredProperties)) {
      for (const name of params.requiredProperties) out.push({ field: `${field}.${String(name)}`, message: 'is required' })
      continue
    }
    if (field === 'event' && error.keyword === 'type') message = 'must be an object'
    out.push({ field, message })
  }
  return out
}

/** A Retry-After (seconds or an HTTP date) in ms; undefined when absent or unreadable. */
function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null || header.trim() === '') return undefined
  if (/^\d+$/.test(header.trim())) return Math.min(Number(header.trim()) * 1000, MAX_RETRY_AFTER_MS)
  const at = Date.parse(header)
  return Number.isNaN(at) ? undefined : Math.min(Math.max(0, at - now), MAX_RETRY_AFTER_MS)
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A failure as the client reports it (an AggregateError of several batches is wrapped). */
function asClientError(err: unknown): EventsClientError {
  if (err instanceof EventsClientError) return err
  return new EventsClientError('undelivered', err instanceof Error ? err.message : String(err), { cause: err })
}

/** `value` when it is an integer in [min, max]; a RangeError naming the option otherwise. */
function integerOption(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, not ${value}`)
  }
  return value
}

/** A queued event: its id and its JSON, fixed when it was tracked. */
interface Queued {
  id: string
  json: string
  bytes: number
}

/**
 * Creates a client sending events to `POST {url}/api/events` in batches, with retries.
 * Call `close()` when done (it flushes).
 */
export function createEventsClient(options: EventsClientOptions): EventsClient {
  const config = Object.freeze({
    endpoint: `${options.url.replace(/\/+$/, '')}/api/events`,
    authorization: `Bearer ${options.token}`,
    batchSize: integerOption('batchSize', options.batchSize ?? 100, 1, MAX_EVENTS_PER_REQUEST),
    flushIntervalMs: integerOption('flushIntervalMs', options.flushIntervalMs ?? 200, 0),
    maxRetries: integerOption('maxRetries', options.maxRetries ?? 5, 0),
    retryBaseMs: integerOption('retryBaseMs', options.retryBaseMs ?? 100, 0),
    retryMaxMs: integerOption('retryMaxMs', options.retryMaxMs ?? 10_000, 0),
    timeoutMs: integerOption('timeoutMs', options.timeoutMs ?? 10_000, 1),
    // Room for the largest event the intake takes, so no valid event is unsendable.
    maxBatchBytes: integerOption('maxBatchBytes', options.maxBatchBytes ?? 1024 * 1024, MAX_EVENT_BYTES + 2),
    concurrency: integerOption('concurrency', options.concurrency ?? 4, 1),
    maxPending: integerOption('maxPending', options.maxPending ?? 100_000, 1),
  })
  const fetchImpl = options.fetch ?? globalThis.fetch
  const random = options.random ?? Math.random
  const onError =
    options.onError ?? ((err: EventsClientError) => process.emitWarning(err.message, { type: 'EventsClientWarning', code: err.code }))

  let queue: Queued[] = []
  let timer: NodeJS.Timeout | undefined
  let closing: Promise<void> | undefined
  /** Batches started and not finished. */
  const inFlight = new Set<Promise<void>>()
  /** Batches waiting for a free slot (over `concurrency`). */
  const slotWaiters: Array<() => void> = []
  let running = 0
  const counters = { sent: 0, failed: 0, retries: 0, batches: 0, inFlight: 0 }

  /** Runs `work` when fewer than `concurrency` batches are being sent. */
  async function withSlot<T>(work: () => Promise<T>): Promise<T> {
    // A finished batch hands its slot straight to the next waiter, so no newcomer can
    // take it in between and exceed the limit.
    if (running < config.concurrency) running++
    else await new Promise<void>((resolve) => slotWaiters.push(resolve))
    try {
      return await work()
    } finally {
      const next = slotWaiters.shift()
      if (next) next()
      else running--
    }
  }

  /** Sends one batch until it is accepted, refused, or out of retries. */
  async function send(batch: Queued[]): Promise<void> {
    const ids = batch.map((e) => e.id)
    const body = `[${batch.map((e) => e.json).join(',')}]`
    /** The last answer and attempt, for the error of a batch given up. */
    let lastStatus: number | undefined
    let attempts = 0
    const once = async (): Promise<void> => {
      attempts++
      lastStatus = undefined
      try {
        const response = await fetchImpl(config.endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: config.authorization },
          body,
          signal: AbortSignal.timeout(config.timeoutMs),
        })
        const text = await response.text()
        lastStatus = response.status
        if (response.status >= 200 && response.status < 300) return
        const refusal = new EventsRejectedError(response.status, parseJson(text), ids)
        if (!RETRYABLE.has(response.status)) throw refusal
        throw new RetryableFailure(refusal, retryAfterMs(response.headers.get('retry-after'), Date.now()))
      } catch (err) {
        if (err instanceof EventsRejectedError || err instanceof RetryableFailure) throw err
        // No answer (refused connection, reset, timeout): the batch may or may not have
        // been taken, and its ids make sending it again safe.
        throw new RetryableFailure(err, undefined)
      }
    }
    try {
      await retry(once, {
        what: 'sending events',
        maxAttempts: config.maxRetries + 1,
        baseMs: config.retryBaseMs,
        maxMs: config.retryMaxMs,
        random,
        isPermanent: (err) => !(err instanceof RetryableFailure),
        minDelayMs: (err) => (err as RetryableFailure).retryAfterMs,
        onRetry: () => {
          counters.retries++
        },
      })
    } catch (err) {
      counters.failed += batch.length
      if (!(err instanceof RetryableFailure)) throw err
      throw new EventsDeliveryError(attempts, lastStatus, ids, err.cause)
    }
    counters.sent += batch.length
    counters.batches++
  }

  /** Cuts the queue into batches and starts them; returns their promises. */
  function drain(): Array<Promise<void>> {
    clearTimeout(timer)
    timer = undefined
    const events = queue
    queue = []
    const started: Array<Promise<void>> = []
    let batch: Queued[] = []
    let bytes = 2
    const start = () => {
      const mine = batch
      counters.inFlight += mine.length
      const promise = withSlot(() => send(mine)).finally(() => {
        counters.inFlight -= mine.length
        inFlight.delete(promise)
      })
      inFlight.add(promise)
      started.push(promise)
      batch = []
      bytes = 2
    }
    for (const event of events) {
      // A comma between events; brackets counted in the initial 2.
      const added = event.bytes + (batch.length > 0 ? 1 : 0)
      if (batch.length > 0 && (batch.length >= config.batchSize || bytes + added > config.maxBatchBytes)) start()
      batch.push(event)
      bytes += event.bytes + (batch.length > 1 ? 1 : 0)
    }
    if (batch.length > 0) start()
    return started
  }

  /** Starts batches no caller waits for; their failures go to `onError`. */
  function drainInBackground(): void {
    for (const promise of drain()) {
      promise.catch((err: unknown) => onError(asClientError(err)))
    }
  }

  function track(event: IncomingEvent): string {
    if (closing) throw new EventsClientError('closed', 'the events client is closed')
    if (queue.length + counters.inFlight >= config.maxPending) {
      throw new EventsClientError('queue_full', `${config.maxPending} events are already waiting to be delivered`)
    }
    const problems = eventProblems(event)
    if (problems.length > 0) throw new EventValidationError(problems)
    const id = event.id ?? randomUUID()
    // Serialized now: the caller may change its object afterwards, the event stays as tracked.
    const json = JSON.stringify(event.id === undefined ? { ...event, id } : event)
    const bytes = Buffer.byteLength(json)
    if (bytes > MAX_EVENT_BYTES) {
      throw new EventValidationError([{ field: 'event', message: `is ${bytes} bytes of JSON, more than ${MAX_EVENT_BYTES}` }])
    }
    queue.push({ id, json, bytes })
    if (queue.length >= config.batchSize) drainInBackground()
    else if (timer === undefined) {
      timer = setTimeout(drainInBackground, config.flushIntervalMs)
      // The exit hook flushes what is queued; the timer alone does not hold the process open.
      timer.unref()
    }
    return id
  }

  async function flush(): Promise<void> {
    const mine = drain()
    const results = await Promise.allSettled(mine)
    // Batches started earlier (by the timer) are waited for too; their errors went to onError.
    await Promise.allSettled([...inFlight])
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
    if (errors.length === 1) throw errors[0]
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} batches of events were not delivered`)
  }

  const onBeforeExit = () => {
    if (queue.length === 0) return
    flush().catch((err: unknown) => onError(asClientError(err)))
  }
  if (options.flushOnExit ?? true) process.on('beforeExit', onBeforeExit)

  function close(): Promise<void> {
    closing ??= (async () => {
      process.off('beforeExit', onBeforeExit)
      await flush()
    })()
    return closing
  }

  return {
    track,
    flush,
    close,
    get stats(): EventsClientStats {
      return { queued: queue.length, ...counters }
    },
  }
}
