/**
 * The alerts domain's tables, as Kysely sees them. Its migrations (`./migrations`) create
 * them; these types must follow every migration.
 *
 * Prices are `numeric`: pg returns them as strings (no float rounding).
 */
import type { ColumnType, Generated, Selectable } from 'kysely'
import Type, { type Static } from 'typebox'
import type { BigIntColumn, CreatedAt, Numeric } from '../../platform/db/columns.ts'

/** How often an alert runs, in minutes: multiples of the scheduler's 2-minute tick. */
export const FrequencyMinutes = Type.Union([Type.Literal(2), Type.Literal(10), Type.Literal(30)], {
  description: 'How often the alert runs, in minutes',
})
export type FrequencyMinutes = Static<typeof FrequencyMinutes>

/** Whether an alert runs. */
export const AlertStatus = Type.Union([Type.Literal('active'), Type.Literal('paused')])
export type AlertStatus = Static<typeof AlertStatus>

/** Who paused an alert: its owner through the API, or a reader through an email's unsubscribe link. */
export const PausedBy = Type.Union([Type.Literal('user'), Type.Literal('unsubscribe')])
export type PausedBy = Static<typeof PausedBy>

/** What became of one run. */
export const RunStatus = Type.Union([Type.Literal('queued'), Type.Literal('done'), Type.Literal('failed'), Type.Literal('skipped')], {
  description:
    '`queued` until a worker stores what it found (`done`); `failed` once its retries ran out (see `error`); ' +
    '`skipped` when the alert was paused or deleted before the run started',
})
export type RunStatus = Static<typeof RunStatus>

/** A timestamp column written by the application. */
type Timestamp = ColumnType<Date, Date | string, Date | string>
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>

/** Saved searches. */
export interface AlertsTable {
  id: Generated<string>
  user_id: string
  email: string
  /** The phrase as shown: trimmed, runs of spaces collapsed. */
  phrase: string
  /** The phrase compared for duplicates: {@link AlertsTable.phrase} lower-cased. */
  phrase_key: string
  frequency_minutes: number
  max_price: ColumnType<string | null, string | null | undefined, string | null>
  currency: ColumnType<string | null, string | null | undefined, string | null>
  status: ColumnType<AlertStatus, AlertStatus | undefined, AlertStatus>
  paused_by: ColumnType<PausedBy | null, PausedBy | null | undefined, PausedBy | null>
  /** The due time of the next run. */
  next_run_at: Timestamp
  last_run_at: NullableTimestamp
  last_insight_at: NullableTimestamp
  created_at: CreatedAt
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>
}

/** One run of an alert per due time. */
export interface AlertRunsTable {
  id: Generated<string>
  alert_id: BigIntColumn
  due_at: Timestamp
  status: ColumnType<RunStatus, RunStatus | undefined, RunStatus>
  /** When its job was handed to the queue; null while that is not known to have happened. */
  enqueued_at: NullableTimestamp
  attempts: ColumnType<number, number | undefined, number>
  /** Items stored (at most 20). */
  item_count: ColumnType<number | null, number | null | undefined, number | null>
  /** Matches eBay reported in all. */
  result_total: ColumnType<number | null, number | null | undefined, number | null>
  cheapest_total: ColumnType<string | null, string | null | undefined, string | null>
  cheapest_currency: ColumnType<string | null, string | null | undefined, string | null>
  /** Items eBay sent that could not be used, with why: `[{ item_id, reason }]`. */
  skipped_items: ColumnType<Array<{ item_id: string | null; reason: string }> | null, string | null | undefined, string | null>
  error: ColumnType<string | null, string | null | undefined, string | null>
  created_at: CreatedAt
  finished_at: NullableTimestamp
}

/** The items a run found, cheapest first. */
export interface AlertItemsTable {
  run_id: BigIntColumn
  position: number
  item_id: string
  title: string
  price: Numeric
  currency: string
  shipping: ColumnType<string | null, string | number | null | undefined, string | number | null>
  total: Numeric
  item_web_url: string
  image_url: string | null
}

/** Which email an outbox row is. */
export type AlertEmailKind = 'list' | 'insight'

/** The email outbox: one row per (alert, due time, kind). */
export interface AlertEmailsTable {
  id: string
  alert_id: BigIntColumn
  run_id: ColumnType<string | null, string | number | null | undefined, string | number | null>
  due_at: Timestamp
  kind: AlertEmailKind
  recipient: string
  subject: string
  html: string
  text: string
  /** Headers beside the standard ones (Message-ID, List-Unsubscribe, ...). */
  headers: ColumnType<Record<string, string>, string, string>
  status: ColumnType<'pending' | 'delivered' | 'dead', 'pending' | 'delivered' | 'dead' | undefined, 'pending' | 'delivered' | 'dead'>
  attempts: ColumnType<number, number | undefined, number>
  next_attempt_at: ColumnType<Date, Date | string | undefined, Date | string>
  lease_until: NullableTimestamp
  expires_at: Timestamp
  last_error: string | null
  last_status: number | null
  created_at: CreatedAt
  delivered_at: NullableTimestamp
}

/** Keys made once per database (the unsubscribe links' signing key). */
export interface AlertSigningKeysTable {
  name: string
  secret: string
  created_at: CreatedAt
}

/** Every table of the alerts domain. */
export interface AlertsTables {
  alerts: AlertsTable
  alert_runs: AlertRunsTable
  alert_items: AlertItemsTable
  alert_emails: AlertEmailsTable
  alert_signing_keys: AlertSigningKeysTable
}

export type AlertRow = Selectable<AlertsTable>
export type AlertRunRow = Selectable<AlertRunsTable>
export type AlertItemRow = Selectable<AlertItemsTable>
export type AlertEmailRow = Selectable<AlertEmailsTable>
