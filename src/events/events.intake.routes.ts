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
 *
 * The events go to Kafka as version 2 messages (see `event-message.ts`): one message per
 * request, or per chunk of at most 768 KiB of a large one, without a key, so the producer
 * spreads them over the partitions. Keying by session id is not needed: readers order a
 * session's events by their timestamp, not by their place in a partition. The message is
 * built around the request body's own text (kept by this plugin's JSON parser), so the
 * events are parsed once and never serialized again on the common path; only bodies over
 * 768 KiB are split and serialized per chunk. Concurrent requests' messages share
 * produce requests (`createSendBatcher`), each request answered once its own message is
 * acknowledged.
 */
import { errorCodes, type FastifyError, type FastifyRequest } from 'fastify'
import secureJsonParse from 'secure-json-parse'
import Type from 'typebox'
import { principalOf, requireAuth } from '../platform/http/auth.ts'
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
import type { StringProducer } from '../platform/kafka/clients.ts'
import { unstorableJsonError } from '../platform/http/text.ts'
import { type KafkaReachability, KafkaUnreachableError } from '../platform/kafka/reachability.ts'
import { createSendBatcher, type SendBatcher } from '../platform/kafka/send-batcher.ts'
import type { Logger } from '../platform/logger.ts'
import { eventIdsJson } from './event-ids.ts'
import { encodeEventBatchMessage, eventBatchMessageHead, eventBatchOverheadBytes } from './event-message.ts'
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
 * Most bytes of one message, and of the messages coalesced into one `send`. A send
 * becomes one produce request with one record batch per partition, and the broker refuses
 * a batch over `message.max.bytes` (1 MiB by default); a larger request is split into
 * several messages. Their order does not matter (see the header).
 */
const MAX_SEND_BYTES = 768 * 1024

const JSON_UTF8 = 'application/json; charset=utf-8'

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
  /**
   * Whether the producer reaches the broker: while it is known to be down, requests are
   * answered 503 at once instead of after the producer's retries.
   * @defaultValue none: every request waits for its send
   */
  reachability?: KafkaReachability | undefined
  /** Sends the messages, coalescing concurrent requests'. @defaultValue createSendBatcher(producer, { reachability }) */
  batcher?: SendBatcher
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

/** {@link inspectData}: nested deeper than the limit. */
const TOO_DEEP = 1
/** {@link inspectData}: holds a number whose JSON may be longer than the text it was parsed from. */
const LONG_NUMBER = 2

/** {@link inspectData}'s flags for one value met inside `data`. */
function inspectValue(value: unknown, depth: number, limit: number): number {
  if (typeof value === 'object') return value === null ? 0 : inspectData(value, limit, depth + 1)
  // Only a number whose JSON is over 3 characters can serialize longer than it was written.
  return typeof value === 'number' && !(Number.isInteger(value) && value > -100 && value < 1000) ? LONG_NUMBER : 0
}

/**
 * Walks an event's `data` once: {@link TOO_DEEP} when it nests arrays and objects deeper
 * than `limit` levels (`data` itself is level 1), {@link LONG_NUMBER} when it holds a
 * number serialized in more than 3 characters. Only such a number can serialize longer
 * than it was written (`1e3` is `1000`), since the shortest exponent form is 3 characters.
 * It recurses, but never deeper than `limit` + 1 calls, whatever the input: it stops at
 * the first level over the limit. (An explicit stack and `Object.values` per object cost
 * the intake 5 µs a request of 50 events in profiles; this, under 1 µs.)
 */
function inspectData(node: object, limit: number, depth = 1): number {
  if (depth > limit) return TOO_DEEP
  let flags = 0
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length && !(flags & TOO_DEEP); i++) flags |= inspectValue(node[i], depth, limit)
  } else {
    // A parsed JSON object: plain, its own keys are all there is (and `__proto__` was refused).
    for (const key in node) {
      flags |= inspectValue((node as Record<string, unknown>)[key], depth, limit)
      if (flags & TOO_DEEP) break
    }
  }
  return flags
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

/** Why {@link withinMs} gave up: the work did not settle in time. */
class SendTimeoutError extends Error {
  override name = 'SendTimeoutError'
}

/**
 * Resolves or rejects as `work` does, unless `ms` pass first: then rejects with a
 * {@link SendTimeoutError}. The work goes on (a producer send cannot be cancelled); its
 * late outcome is left to the caller. A plain timer, cleared when the work settles
 * (`AbortSignal.timeout` kept a timer and a DOMException per request alive for the whole
 * timeout: 7% of the intake's CPU).
 */
function withinMs<T>(work: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new SendTimeoutError(`not settled within ${ms} ms`)), ms)
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err as Error)
      },
    )
  })
}

/** Whether JSON text has a number in exponent notation (`1e20`), which serializes longer than written. */
function hasExponentNumber(json: string): boolean {
  // Cheap test first: without a digit before an `e`, there is none.
  if (!/[0-9][eE]/.test(json)) return false
  // Outside strings, a digit followed by `e` can only be an exponent.
  for (const [token] of json.matchAll(/"(?:[^"\\]|\\.)*"|[0-9][eE]/g)) if (token.charCodeAt(0) !== 34) return true
  return false
}

/** Sizes of the events as JSON, when one may be over {@link MAX_EVENT_BYTES}; undefined when none can be. */
function eventSizes(events: IncomingEvent[], rawBytes: number, raw: string, longNumbers: boolean): number[] | undefined {
  // Serializing an event never makes it longer than its text in the body, except numbers
  // written with an exponent; so a small body without them holds only small events.
  if (rawBytes <= MAX_EVENT_BYTES && (!longNumbers || !hasExponentNumber(raw))) return undefined
  return events.map((event) => Buffer.byteLength(JSON.stringify(event)))
}

/** A message of accepted events and the bytes it counts against a send. */
interface OutgoingMessage {
  value: string
  bytes: number
}

/**
 * The version 2 messages of a request: one around the body's text when it fits in
 * {@link MAX_SEND_BYTES}, otherwise chunks of events serialized again, each at most that
 * (an event is at most {@link MAX_EVENT_BYTES}, so every chunk holds at least one).
 */
function eventMessages(
  header: { app_id: string; received_at: string },
  idsJson: string,
  events: IncomingEvent[],
  raw: { text: string; bytes: number; isArray: boolean },
  sizes: number[] | undefined,
): OutgoingMessage[] {
  const head = eventBatchMessageHead(header, idsJson)
  // The head, the body (in brackets when it is one event) and the closing brace.
  const wholeBytes = Buffer.byteLength(head) + raw.bytes + (raw.isArray ? 1 : 3)
  if (wholeBytes <= MAX_SEND_BYTES) {
    return [{ value: raw.isArray ? `${head}${raw.text}}` : `${head}[${raw.text}]}`, bytes: wholeBytes }]
  }
  // An event's JSON, a comma, and its id in `ids` (`"<36>",`).
  const perEvent = (i: number) => (sizes?.[i] ?? Buffer.byteLength(JSON.stringify(events[i]))) + 1 + 39
  const ids = JSON.parse(idsJson) as string[]
  const messages: OutgoingMessage[] = []
  let from = 0
  let bytes = eventBatchOverheadBytes({ ...header, ids: [] })
  const flush = (to: number) => {
    const chunkIds = ids.slice(from, to)
    const value = encodeEventBatchMessage({ ...header, ids: chunkIds }, JSON.stringify(events.slice(from, to)))
    messages.push({ value, bytes: Buffer.byteLength(value) })
    from = to
    bytes = eventBatchOverheadBytes({ ...header, ids: [] })
  }
  for (let i = 0; i < events.length; i++) {
    const size = perEvent(i)
    if (i > from && bytes + size > MAX_SEND_BYTES) flush(i)
    bytes += size
  }
  flush(events.length)
  return messages
}

/** The body's text as received, kept by the intake's JSON parser for {@link eventMessages}. */
const rawBodies = new WeakMap<FastifyRequest, string>()

/** The intake route, as a plugin to register under the API. */
export function eventIntakeRoutes(deps: EventIntakeDeps): RoutePlugin {
  const { producer, topic } = deps
  const log = deps.log.child({ component: 'event-intake', topic })
  const sendTimeoutMs = deps.sendTimeoutMs ?? 5000
  const retryAfterSeconds = deps.retryAfterSeconds ?? 5

  const batcher = deps.batcher ?? createSendBatcher(producer, { maxBytes: MAX_SEND_BYTES, reachability: deps.reachability })

  /**
   * Sends every message and resolves only when the broker confirmed all of them; rejects
   * when one send fails or when they are not all confirmed within `sendTimeoutMs`. A send
   * given up on keeps running in the producer, so its late outcome is logged: written
   * after all means the client may send duplicates.
   */
  const sendAll = async (messages: OutgoingMessage[], events: number): Promise<void> => {
    const sent = Promise.all(messages.map(({ value, bytes }) => batcher.send({ topic, value }, bytes)))
    try {
      await withinMs(sent, sendTimeoutMs)
    } catch (err) {
      if (err instanceof SendTimeoutError) {
        sent.then(
          () => log.warn({ events }, 'events answered 503 were written late (the client may resend them)'),
          (lateErr: unknown) => log.warn({ err: lateErr, events }, 'a send given up on failed'),
        )
      }
      throw err
    }
  }

  return async (app) => {
    // This plugin's JSON parser, as Fastify's own (secure-json-parse refusing `__proto__`
    // and `constructor.prototype`), but it also keeps the text for the message.
    app.removeContentTypeParser('application/json')
    // The text kept is the body as validated: body validation neither coerces types nor
    // fills defaults (see createHttpApp), so the parsed body and its text say the same.
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      // A byte order mark is skipped by the parser, and would break the message built around the text.
      const text = (body as string).charCodeAt(0) === 0xfeff ? (body as string).slice(1) : (body as string)
      if (text.length === 0) {
        done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined)
        return
      }
      let parsed: unknown
      try {
        parsed = secureJsonParse.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
      } catch {
        done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined)
        return
      }
      // What PostgreSQL cannot store (NUL, unpaired surrogates) would stop the worker at
      // the event: refused here, as the API's own JSON parser does.
      const unstorable = unstorableJsonError(text, parsed)
      if (unstorable) {
        done(unstorable, undefined)
        return
      }
      rawBodies.set(request, text)
      done(null, parsed)
    })

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
          operationId: 'sendEvents',
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
        const isArray = Array.isArray(body)
        const events = isArray ? body : [body]
        const text = rawBodies.get(request)
        if (text === undefined) throw new Error('the body was not read by the intake parser')
        const rawBytes = Buffer.byteLength(text)
        const tooDeep: FieldError[] = []
        let longNumbers = false
        // Checked before any serializing: JSON.stringify recurses and would overflow the stack.
        events.forEach((event, index) => {
          const flags = inspectData(event.data, MAX_DATA_DEPTH)
          if (flags & LONG_NUMBER) longNumbers = true
          if (flags & TOO_DEEP) {
            const field = isArray ? `body[${index}]` : 'body'
            tooDeep.push({ field: `${field}.data`, message: `nests arrays and objects deeper than ${MAX_DATA_DEPTH} levels` })
          }
        })
        if (tooDeep.length > 0) {
          const shown = tooDeep.slice(0, 20)
          throw new BadRequest(`invalid request: ${shown.map((e) => e.field).join(', ')}`, shown, 'validation_failed')
        }
        const sizes = eventSizes(events, rawBytes, text, longNumbers)
        if (sizes !== undefined) {
          const oversized: OversizedEvent[] = []
          sizes.forEach((bytes, index) => {
            if (bytes > MAX_EVENT_BYTES) oversized.push({ index, field: isArray ? `body[${index}]` : 'body', bytes })
          })
          if (oversized.length > 0) throw eventsTooLarge(oversized)
        }

        const now = Date.now()
        const idsJson = eventIdsJson(events, now)
        const header = { app_id: appId, received_at: new Date(now).toISOString() }
        const messages = eventMessages(header, idsJson, events, { text, bytes: rawBytes, isArray }, sizes)
        try {
          await sendAll(messages, events.length)
        } catch (err) {
          const timedOut = err instanceof SendTimeoutError
          // Refused at once while the broker is known to be down: the outage itself was
          // logged once, a warning per refused request would only repeat it.
          const knownDown = err instanceof KafkaUnreachableError
          if (!knownDown) request.log.warn({ err, appId, events: events.length, timedOut }, 'could not queue events in Kafka')
          const reason = timedOut
            ? `the event queue did not confirm them within ${sendTimeoutMs} ms`
            : knownDown
              ? 'the event queue is unreachable'
              : 'the event queue is unavailable'
          throw new ServiceUnavailable(`events cannot be taken right now (${reason}); send them again later`, retryAfterSeconds, err)
        }
        // The answer's text is written here, the same as the response schema would make it:
        // its serializer escapes each of up to 500 ids one by one.
        return reply.code(202).type(JSON_UTF8).send(`{"accepted":${events.length},"ids":${idsJson}}` as never)
      },
    )
  }
}
