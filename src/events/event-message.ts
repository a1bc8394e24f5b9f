/**
 * Accepted events as they travel through Kafka from the intake to the worker.
 *
 * Version 2 (written by the intake): one message per request, or per chunk of at most
 * 768 KiB of a larger one, `{"v":2,"app_id","received_at","ids":[...],"events":[...]}`,
 * `ids[i]` being the id of `events[i]`. It has no key, so the producer spreads messages
 * over the partitions: the order of a session's events does not depend on partitioning,
 * since readers order a session by the event's own timestamp (`occurred_at`), which
 * applications may send late anyway. The events are the application's JSON text as
 * received (the intake builds the value around the request body instead of serializing
 * the events again), so the worker stores each raw event exactly as sent.
 *
 * Version 1 (written before): one message per event, keyed by session id,
 * `{"v":1,"id","app_id","received_at","event"}`. Still decoded, for messages already in a
 * topic.
 */
import type { IncomingEvent } from './events.schemas.ts'

/** An accepted event, as the worker handles it whichever message carried it. */
export interface AcceptedEvent {
  /** The event's id: the application's own, or one given at intake. */
  id: string
  /** The application that sent it. */
  app_id: string
  /** When the intake accepted it (ISO 8601). */
  received_at: string
  event: IncomingEvent
}

/** A version 1 message value: one event. */
export interface EventMessageV1 extends AcceptedEvent {
  v: 1
}

/** A version 2 message value: the events of one request (or of one chunk of it). */
export interface EventMessageV2 {
  v: 2
  /** The application that sent them. */
  app_id: string
  /** When the intake accepted them (ISO 8601). */
  received_at: string
  /** The events' ids, `ids[i]` the id of `events[i]`. */
  ids: string[]
  events: IncomingEvent[]
}

/** The fields of a version 2 message besides its events. */
export type EventBatchHeader = Omit<EventMessageV2, 'v' | 'events'>

/** Encodes one event as a version 1 message (dead letters of single events, tests of old messages). */
export function encodeEventMessage(message: AcceptedEvent): string {
  return JSON.stringify({ v: 1, id: message.id, app_id: message.app_id, received_at: message.received_at, event: message.event })
}

/**
 * Encodes a version 2 message around `eventsJson`, the JSON text of an array of events
 * (such as a request body), without parsing or serializing the events again. The caller
 * vouches that it is a JSON array with one element per id.
 */
export function encodeEventBatchMessage(header: EventBatchHeader, eventsJson: string): string {
  return `${eventBatchMessageHead(header, JSON.stringify(header.ids))}${eventsJson}}`
}

/**
 * The text of a version 2 message before its events' JSON (which a `}` then closes), for
 * `idsJson`, the JSON of the events' ids.
 */
export function eventBatchMessageHead(header: Omit<EventBatchHeader, 'ids'>, idsJson: string): string {
  return `{"v":2,"app_id":${JSON.stringify(header.app_id)},"received_at":${JSON.stringify(header.received_at)},"ids":${idsJson},"events":`
}

/** The bytes {@link encodeEventBatchMessage} adds to the events' JSON for `header` (UTF-8). */
export function eventBatchOverheadBytes(header: EventBatchHeader): number {
  return Buffer.byteLength(encodeEventBatchMessage(header, ''))
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const isTimestamp = (value: unknown): value is string => typeof value === 'string' && !Number.isNaN(Date.parse(value))

/**
 * Decodes a message of either version into its events; throws an Error naming the
 * problem (the worker dead-letters the whole message: a message is written by the intake
 * in one piece, so a malformed one is not partly trustworthy).
 */
export function decodeEventMessage(text: string): AcceptedEvent[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new Error(`event message is not JSON: ${(err as Error).message}`)
  }
  if (!isObject(value) || (value.v !== 1 && value.v !== 2)) throw new Error('event message has no version 1 or 2')
  const { app_id, received_at } = value
  if (typeof app_id !== 'string') throw new Error('event message has no app_id')
  if (!isTimestamp(received_at)) throw new Error('event message has no received_at')
  if (value.v === 1) {
    const { id, event } = value
    if (typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error('event message has no id')
    if (!isObject(event)) throw new Error('event message has no event')
    return [{ id, app_id, received_at, event: event as unknown as IncomingEvent }]
  }
  const { ids, events } = value
  if (!Array.isArray(ids) || !Array.isArray(events) || events.length === 0 || ids.length !== events.length) {
    throw new Error('event message has no events with as many ids')
  }
  return events.map((event: unknown, i) => {
    const id: unknown = ids[i]
    if (typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id)) throw new Error(`event message has no id for event ${i}`)
    if (!isObject(event)) throw new Error(`event message has no event ${i}`)
    return { id, app_id, received_at, event: event as unknown as IncomingEvent }
  })
}
