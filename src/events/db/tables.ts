/**
 * The events domain's tables (The Eye), as Kysely sees them. Its migrations
 * (`./migrations`) create them; these types must follow every migration.
 */
import type { ColumnType, Selectable } from 'kysely'
import Type, { type Static } from 'typebox'
import type { CreatedAt } from '../../platform/db/columns.ts'

/** Applications trusted to send events (The Eye): only their token's SHA-256 is stored. */
export interface AppsTable {
  id: string
  name: string
  token_hash: string
  created_at: CreatedAt
  revoked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** The JSON Schema the `data` of an event type must satisfy. */
export interface EventTypesTable {
  category: string
  name: string
  schema: ColumnType<Record<string, unknown>, string, string>
  description: string | null
  created_at: CreatedAt
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>
}

/** Valid events, stored once each (the id is the key). */
export interface EventsTable {
  id: string
  app_id: string
  session_id: string
  category: string
  name: string
  data: ColumnType<unknown, string, string>
  occurred_at: ColumnType<Date, Date | string, Date | string>
  received_at: ColumnType<Date, Date | string, Date | string>
  stored_at: CreatedAt
  /** False when the type had no registered schema and was stored unvalidated. */
  validated: ColumnType<boolean, boolean | undefined, boolean>
}

/** One reason an event was refused. */
export const EventErrorReason = Type.Object({
  field: Type.String({ description: 'JSON pointer into the event, e.g. `/data/host`' }),
  message: Type.String(),
})
export type EventErrorReason = Static<typeof EventErrorReason>

/** Invalid events: the raw event and every reason. */
export interface EventErrorsTable {
  id: string
  app_id: string
  session_id: string | null
  category: string | null
  name: string | null
  raw: ColumnType<unknown, string, string>
  reasons: ColumnType<EventErrorReason[], string, string>
  received_at: ColumnType<Date, Date | string, Date | string>
  stored_at: CreatedAt
}

/** The events domain's tables, for the application's `Database`. */
export interface EventsTables {
  apps: AppsTable
  event_types: EventTypesTable
  events: EventsTable
  event_errors: EventErrorsTable
}

export type AppRow = Selectable<AppsTable>
export type EventTypeRow = Selectable<EventTypesTable>
export type EventRow = Selectable<EventsTable>
export type EventErrorRow = Selectable<EventErrorsTable>
