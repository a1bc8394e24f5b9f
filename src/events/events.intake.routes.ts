/**
 * `POST /api/events`: trusted applications send events about their users' sessions.
 *
 * The request path checks only syntax (the {@link IncomingEvents} schema, the size of each
 * event and how deep its `data` nests) and hands the events to Kafka; the worker
 * validates `data` per event type and the timestamp, and stores them. The 202 is the promise that nothing is lost: it is
 * sent only after the broker confirmed every message of the request (idempotent
 * producer, acks from all in-sync replicas). When the broker cannot confirm them in
 * time the answer is 503 with `Retry-After`: the events may or may not have been
 * written, so a client retries them, and an event sent with its own `id` is stored once.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyError, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { principalOf, requireAuth } from '../auth/index.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import {
  AppError,
  BadRequest,
  ErrorResponseSchema,
  type FieldError,
  Forbidden,
  PayloadTooLarge,
  ServiceUnavailable,
} from '../platform/http/errors.ts'
import type { StringProducer } from '../platform/kafka.ts'
import type { Logger } from '../platform/logger.ts'
import { encodeEventMessage } from './event-message.ts'
import { type IncomingEvent, IncomingEvents, MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST } from './events.schemas.ts'

/**
 * The body limit of `POST /api/events`: a full batch of the largest events (500 x 32 KiB)
 * plus room for the array's punctuation and whitespace, 512 x 32 KiB = 16 MiB. It
 * replaces the API's BODY_LIMIT_BYTES on this route only.
 */
export const INTAKE_BODY_LIMIT_BYTES = (MAX_EVENTS_PER_REQUEST + 12) * MAX_EVENT_BYTES

/**
 * Deepest nesting of arrays and objects in an event's `data` (`data` itself is level 1).
 * Not a business rule but a bound like the size: 32 KiB of `[[[[...` nests 16,000 levels,
 * which no real event needs and which overflows the stack of the recursive
 * `JSON.stringify` (here and in the worker) and of PostgreSQL's jsonb parser.
 */
export const MAX_DATA_DEPTH = 64

/**
 * Most bytes of keys and values handed to the producer in one `send`. A send becomes one
 * produce request with one record batch per partition, and the broker refuses a batch
 * over `message.max.bytes` (1 MiB by default); a large request is sent in several
 * chunks, one after the other, so the events of one request keep their order.
 */
const MAX_SEND_BYTES = 768 * 1024

/** What {@link eventIntakeRoutes} needs. */
export interface EventIntakeDeps {
  /** An idempotent producer with acks=all (`createProducer`); not closed by the routes. */
  producer: StringProducer
  /** The topic taking accepted events (EVENTS_TOPIC). */
  topic: string
  log: Logger
  /** Longest wait for the broker to confirm a request's events before answering 503, in ms. @defaultValue 5000 */
  sendTimeoutMs?: number
  /** The `Retry-After` of a 503, in seconds. @defaultValue 5 */
  retryAfterSeconds?: number
}

/** The 202 answer. */
const EventsAccepted = Type.Object(
  {
    accepted: Type.Integer({ minimum: 1, description: 'How many events were accepted (all of the request)' }),
    ids: Type.Array(Type.String({ format: 'uuid' }), {
      description: "The events' ids, in request order: each event's own `id`, or one given now",
    }),
  },
  {
    description: 'Every event is durably queued; the worker validates and stores it',
    examples: [{ accepted: 2, ids: ['3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11', '9b2d5a1e-0c44-4a7b-8f0e-5d6c7b8a9f00'] }],
  },
)

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

/** Refuses callers that are not applications (user and admin tokens). */
async function requireApp(request: FastifyRequest): Promise<void> {
  if (principalOf(request).appId !== undefined) return
  throw new Forbidden('sending events needs an application token (`bourse apps create NAME`), not a user or admin token')
}

/** Whether `value` nests arrays and objects deeper than `limit` levels (itself being level 1); iterative, so any depth is safe. */
function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: Array<{ node: unknown; depth: number }> = [{ node: value, depth: 1 }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.node === null || typeof item.node !== 'object') continue
    if (item.depth > limit) return true
    for (const child of Object.values(item.node)) {
      if (child !== null && typeof child === 'object') stack.push({ node: child, depth: item.depth + 1 })
    }
  }
  return false
}

/** An event of the request whose JSON is over {@link MAX_EVENT_BYTES}. */
interface OversizedEvent {
  index: number
  field: string
  bytes: number
}

/** 413 naming the events over the per-event limit. */
function eventsTooLarge(oversized: OversizedEvent[]): AppError {
  const first = oversized[0]!
  const more = oversized.length > 1 ? ` (and ${oversized.length - 1} more)` : ''
  return new AppError(
    'event_too_large',
    413,
    `event ${first.index} (${first.field}) is ${first.bytes} bytes as JSON, over the ${MAX_EVENT_BYTES}-byte limit${more}`,
    { details: { limitBytes: MAX_EVENT_BYTES, events: oversized.slice(0, 20) } },
  )
}

/**
 * Keeps only the validation errors of the branch the body is meant for: an object is an
 * event, an array a batch. Ajv reports both branches of the union, which would tell the
 * sender of one event that it "must be array" too.
 */
function relevantValidationErrors(err: FastifyError, body: unknown): FastifyError['validation'] {
  const errors = err.validation ?? []
  const branch = Array.isArray(body) ? '#/anyOf/1/' : typeof body === 'object' && body !== null ? '#/anyOf/0/' : undefined
  const kept = branch === undefined ? [] : errors.filter((e) => e.schemaPath.startsWith(branch))
  if (kept.length > 0) return kept
  return [
    {
      keyword: 'type',
      instancePath: '',
      schemaPath: '#/anyOf',
      params: {},
      message: 'must be an event (a JSON object) or an array of 1 to 500 events',
    },
  ]
}

/**
 * Resolves or rejects as `work` does, unless `signal` aborts first: then rejects with its
 * reason. The work goes on (a producer send cannot be cancelled); its late outcome is
 * left to the caller.
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err as Error)
      },
    )
  })
}

type EventRecord = { topic: string; key: string; value: string }

/** Splits messages into sends of at most {@link MAX_SEND_BYTES}, keeping their order. */
function chunkMessages(messages: EventRecord[]): EventRecord[][] {
  const chunks: EventRecord[][] = []
  let chunk: EventRecord[] = []
  let bytes = 0
  for (const message of messages) {
    const size = Buffer.byteLength(message.key) + Buffer.byteLength(message.value)
    if (chunk.length > 0 && bytes + size > MAX_SEND_BYTES) {
      chunks.push(chunk)
      chunk = []
      bytes = 0
    }
    chunk.push(message)
    bytes += size
  }
  if (chunk.length > 0) chunks.push(chunk)
  return chunks
}

/** The intake route, as a plugin to register under the API. */
export function eventIntakeRoutes(deps: EventIntakeDeps): RoutePlugin {
  const { producer, topic } = deps
  const log = deps.log.child({ component: 'event-intake', topic })
  const sendTimeoutMs = deps.sendTimeoutMs ?? 5000
  const retryAfterSeconds = deps.retryAfterSeconds ?? 5

  /**
   * Sends every message, chunk after chunk, and resolves only when the broker confirmed
   * all of them; rejects when one send fails or when they are not all confirmed within
   * `sendTimeoutMs`. A send given up on keeps running in the producer, so its late
   * outcome is logged: written after all means the client may send duplicates.
   */
  const sendAll = async (messages: EventRecord[]): Promise<void> => {
    const deadline = AbortSignal.timeout(sendTimeoutMs)
    for (const chunk of chunkMessages(messages)) {
      const sent = producer.send({ messages: chunk })
      try {
        await unlessAborted(sent, deadline)
      } catch (err) {
        if (deadline.aborted) {
          sent.then(
            () => log.warn({ events: chunk.length }, 'events answered 503 were written late (the client may resend them)'),
            (lateErr: unknown) => log.warn({ err: lateErr, events: chunk.length }, 'a send given up on failed'),
          )
        }
        throw err
      }
    }
  }

  return async (app) => {
    // This plugin's routes only: errors are reworded here, then answered by the API's
    // error handler (an error thrown here goes to the parent's handler).
    app.setErrorHandler((err: FastifyError, request) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw new PayloadTooLarge(INTAKE_BODY_LIMIT_BYTES)
      if (Array.isArray(err.validation) && err.validationContext === 'body') {
        err.validation = relevantValidationErrors(err, request.body)
      }
      throw err
    })

    app.post(
      '/api/events',
      {
        // Both run before the body is read: a caller that may not send events never
        // makes the API parse up to 16 MiB.
        onRequest: [requireAuth, requireApp],
        bodyLimit: INTAKE_BODY_LIMIT_BYTES,
        schema: {
          tags: ['events'],
          summary: 'Send events: one, or an array of up to 500; 202 once they are durably queued',
          description:
            'Needs an application token (`bourse apps create NAME`). Only the shape is checked here: each event ' +
            `is at most ${MAX_EVENT_BYTES / 1024} KiB as JSON, has \`session_id\`, \`category\`, \`name\`, an object \`data\` ` +
            `(nested at most ${MAX_DATA_DEPTH} levels deep) and a \`timestamp\` string, and nothing else besides an ` +
            'optional `id` (a UUID). The worker then validates `data` against the schema registered for (category, name) ' +
            'and the timestamp; invalid events are kept as event errors.\n\n' +
            'The 202 lists the ids, in request order. A 503 (with `Retry-After`) means the events may not have been ' +
            'queued: send them again; an event with its own `id` is stored once however often it is sent.',
          body: IncomingEvents,
          response: { 202: EventsAccepted, ...errors(400, 401, 403, 413, 415, 429, 503) },
        },
      },
      async (request, reply) => {
        const appId = principalOf(request).appId!
        const body: IncomingEvent | IncomingEvent[] = request.body
        const events = Array.isArray(body) ? body : [body]
        const receivedAt = new Date().toISOString()
        const ids: string[] = []
        const messages: EventRecord[] = []
        const oversized: OversizedEvent[] = []
        const tooDeep: FieldError[] = []
        events.forEach((event, index) => {
          const field = Array.isArray(body) ? `body[${index}]` : 'body'
          // Checked first: JSON.stringify recurses and would overflow the stack.
          if (nestsDeeperThan(event.data, MAX_DATA_DEPTH)) {
            tooDeep.push({ field: `${field}.data`, message: `nests arrays and objects deeper than ${MAX_DATA_DEPTH} levels` })
            return
          }
          const bytes = Buffer.byteLength(JSON.stringify(event))
          if (bytes > MAX_EVENT_BYTES) {
            oversized.push({ index, field, bytes })
            return
          }
          const id = event.id ?? randomUUID()
          ids.push(id)
          messages.push({
            topic,
            key: event.session_id,
            value: encodeEventMessage({ v: 1, id, app_id: appId, received_at: receivedAt, event }),
          })
        })
        if (tooDeep.length > 0) {
          const shown = tooDeep.slice(0, 20)
          throw new BadRequest(`invalid request: ${shown.map((e) => e.field).join(', ')}`, shown, 'validation_failed')
        }
        if (oversized.length > 0) throw eventsTooLarge(oversized)

        try {
          await sendAll(messages)
        } catch (err) {
          const timedOut = err instanceof DOMException && err.name === 'TimeoutError'
          request.log.warn({ err, appId, events: events.length, timedOut }, 'could not queue events in Kafka')
          const reason = timedOut ? `the event queue did not confirm them within ${sendTimeoutMs} ms` : 'the event queue is unavailable'
          throw new ServiceUnavailable(`events cannot be taken right now (${reason}); send them again later`, retryAfterSeconds, err)
        }
        return reply.code(202).send({ accepted: ids.length, ids })
      },
    )
  }
}
