/**
 * An accepted event as it travels through Kafka from the intake to the worker. Keyed by
 * session id, so one session's events stay in order in one partition. The event is kept
 * exactly as the application sent it (the worker stores the raw event with any error).
 */
import type { IncomingEvent } from './events.schemas.ts'

/** The message value. */
export interface EventMessage {
  v: 1
  /** The event's id: the application's own, or one given at intake. */
  id: string
  /** The application that sent it. */
  app_id: string
  /** When the intake accepted it (ISO 8601). */
  received_at: string
  event: IncomingEvent
}

/** Encodes an accepted event. */
export function encodeEventMessage(message: EventMessage): string {
  return JSON.stringify(message)
}

/** Decodes a message; throws an Error naming the problem (the worker dead-letters it). */
export function decodeEventMessage(text: string): EventMessage {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new Error(`event message is not JSON: ${(err as Error).message}`)
  }
  const m = value as Partial<EventMessage> | null
  if (!m || typeof m !== 'object' || m.v !== 1) throw new Error('event message has no version 1')
  if (typeof m.id !== 'string' || !/^[0-9a-f-]{36}$/i.test(m.id)) throw new Error('event message has no id')
  if (typeof m.app_id !== 'string') throw new Error('event message has no app_id')
  if (typeof m.received_at !== 'string' || Number.isNaN(Date.parse(m.received_at))) throw new Error('event message has no received_at')
  if (!m.event || typeof m.event !== 'object') throw new Error('event message has no event')
  return m as EventMessage
}
