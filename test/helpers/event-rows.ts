/**
 * Stored events and event errors written straight into PostgreSQL (as the worker would
 * store them), for the tests of the query routes and the admin page.
 */
import { randomUUID } from 'node:crypto'
import type { Db } from '../../src/database.ts'

/** An event row to insert; timestamps are text PostgreSQL reads (microseconds kept). */
export interface EventRowSpec {
  id?: string
  appId: string
  sessionId: string
  category?: string
  name?: string
  data?: Record<string, unknown>
  /** `occurred_at`, e.g. `2021-01-01T09:15:27.243860Z`. */
  at: string
  receivedAt?: string
  storedAt?: string
  validated?: boolean
}

/** An event error row to insert. */
export interface EventErrorRowSpec {
  id?: string
  appId: string
  sessionId?: string | null
  category?: string | null
  name?: string | null
  raw?: unknown
  reasons: Array<{ field: string; message: string }>
  receivedAt?: string
  /** `stored_at`, e.g. `2021-01-01T09:15:27.243860Z`. */
  storedAt: string
}

/** Inserts events; resolves to their ids in the order given. */
export async function insertEventRows(db: Db, specs: EventRowSpec[]): Promise<string[]> {
  const rows = specs.map((s) => ({
    id: s.id ?? randomUUID(),
    app_id: s.appId,
    session_id: s.sessionId,
    category: s.category ?? 'page interaction',
    name: s.name ?? 'pageview',
    data: JSON.stringify(s.data ?? { host: 'www.consumeraffairs.com', path: '/' }),
    occurred_at: s.at,
    received_at: s.receivedAt ?? s.at,
    stored_at: s.storedAt ?? s.receivedAt ?? s.at,
    validated: s.validated ?? true,
  }))
  for (let i = 0; i < rows.length; i += 1000) await db.insertInto('events').values(rows.slice(i, i + 1000)).execute()
  return rows.map((r) => r.id)
}

/** Inserts event errors; resolves to their ids in the order given. */
export async function insertEventErrorRows(db: Db, specs: EventErrorRowSpec[]): Promise<string[]> {
  const rows = specs.map((s) => ({
    id: s.id ?? randomUUID(),
    app_id: s.appId,
    session_id: s.sessionId === undefined ? 'no-session' : s.sessionId,
    category: s.category === undefined ? 'page interaction' : s.category,
    name: s.name === undefined ? 'pageview' : s.name,
    raw: JSON.stringify(s.raw ?? { session_id: s.sessionId, data: {} }),
    reasons: JSON.stringify(s.reasons),
    received_at: s.receivedAt ?? s.storedAt,
    stored_at: s.storedAt,
  }))
  for (let i = 0; i < rows.length; i += 1000) await db.insertInto('event_errors').values(rows.slice(i, i + 1000)).execute()
  return rows.map((r) => r.id)
}

/** `base` (an ISO instant to the millisecond) plus `micros` microseconds, as ISO text with microseconds. */
export function microsAfter(base: string, micros: number): string {
  const baseMs = Date.parse(base)
  const totalMicros = BigInt(baseMs) * 1000n + BigInt(micros)
  const ms = Number(totalMicros / 1000n)
  const rest = Number(totalMicros % 1000n)
  return `${new Date(ms).toISOString().slice(0, -1)}${String(rest).padStart(3, '0')}Z`
}
