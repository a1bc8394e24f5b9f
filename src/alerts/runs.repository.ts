/**
 * The runs side of the alerts tables: what a worker reads before a run and writes after
 * it. Storing a run (its items, its emails in the outbox, the run marked done, the alert's
 * last run and insight times, the senders woken) is one statement, {@link storeRun}, that
 * locks the run and writes only while it is `queued`: a retried or duplicated job, or a
 * worker killed after the commit, can never store a run twice. One statement, not a
 * transaction of ten: the worker's and PostgreSQL's CPU per run is what limits how many
 * runs a second a worker stores (`npm run bench:alerts`).
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { AlertRow, AlertRunRow } from './db/tables.ts'
import type { EbayItem } from './ebay.client.ts'
import type { RunSummary } from './insights.ts'

/** A run with its alert (null when the alert was deleted). */
export interface RunWithAlert {
  run: AlertRunRow
  alert: AlertRow | null
}

/** The run `runId` and its alert, in one query; undefined when the run is gone (its alert was deleted). */
export async function loadRun(db: Db, runId: string): Promise<RunWithAlert | undefined> {
  const row = await db
    .selectFrom('alert_runs as r')
    .leftJoin('alerts as a', 'a.id', 'r.alert_id')
    .selectAll('r')
    .select((eb) => eb.fn.toJson('a').as('alert'))
    .where('r.id', '=', runId)
    .executeTakeFirst()
  if (!row) return undefined
  const { alert, ...run } = row
  return { run, alert: alert === null ? null : alertFromJson(alert as unknown as Record<string, unknown>) }
}

/** An alert row as `to_json` wrote it: timestamps back to Dates, numeric and bigint as text. */
function alertFromJson(json: Record<string, unknown>): AlertRow {
  const date = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string))
  return {
    ...(json as unknown as AlertRow),
    id: String(json.id),
    max_price: json.max_price === null ? null : String(json.max_price),
    next_run_at: date(json.next_run_at)!,
    last_run_at: date(json.last_run_at),
    last_insight_at: date(json.last_insight_at),
    created_at: date(json.created_at)!,
    updated_at: date(json.updated_at)!,
  }
}

/** Longest error text kept on a run. */
const maxErrorLength = 1000

/** Ends a queued run without a search (its alert was paused meanwhile). False when it was no longer queued. */
export async function markRunSkipped(db: Db, runId: string, reason: string): Promise<boolean> {
  const result = await db
    .updateTable('alert_runs')
    .set({ status: 'skipped', error: reason.slice(0, maxErrorLength), finished_at: sql<Date>`now()` })
    .where('id', '=', runId)
    .where('status', '=', 'queued')
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/** Records a failed attempt of a queued run; with `final`, the run is failed for good. */
export async function recordRunAttemptFailed(db: Db, runId: string, error: string, final: boolean): Promise<void> {
  await db
    .updateTable('alert_runs')
    .set((eb) => ({
      attempts: eb('attempts', '+', 1),
      error: error.slice(0, maxErrorLength),
      ...(final && { status: 'failed' as const, finished_at: sql<Date>`now()` }),
    }))
    .where('id', '=', runId)
    .where('status', '=', 'queued')
    .execute()
}

/** An item to store, cheapest first: as the eBay client reads it. */
export type ItemToStore = EbayItem

/** What a run found. */
export interface RunResult {
  items: readonly ItemToStore[]
  /** Matches eBay reported in all. */
  resultTotal: number
  /** Items eBay sent that could not be used, with why. */
  skipped: ReadonlyArray<{ itemId: string | null; reason: string }>
}

/**
 * The done runs of an alert due in `[from, to)`, each with its cheapest item (what the
 * insight rules read).
 */
export async function runSummaries(
  db: Db,
  alertId: string,
  from: Date,
  to: Date,
): Promise<RunSummary[]> {
  const rows = await db
    .selectFrom('alert_runs as r')
    .leftJoin('alert_items as i', (join) => join.onRef('i.run_id', '=', 'r.id').on('i.position', '=', 0))
    .select(['r.due_at', 'i.item_id', 'i.title', 'i.total', 'i.currency', 'i.item_web_url'])
    .where('r.alert_id', '=', alertId)
    .where('r.status', '=', 'done')
    .where('r.due_at', '>=', from)
    .where('r.due_at', '<', to)
    .orderBy('r.due_at')
    .execute()
  return rows.map((row) => ({
    dueAt: row.due_at,
    cheapest:
      row.item_id === null || row.title === null || row.total === null || row.currency === null || row.item_web_url === null
        ? null
        : { itemId: row.item_id, title: row.title, total: row.total, currency: row.currency, itemWebUrl: row.item_web_url },
  }))
}

/** An email of the run, for the outbox. */
export interface EmailToQueue {
  /** Outbox row id, also the Message-ID's local part. */
  id: string
  kind: 'list' | 'insight'
  recipient: string
  subject: string
  html: string
  text: string
  headers: Record<string, string>
  /** Until when a failing send is retried. */
  expiresAt: Date
}

/** What {@link storeRun} writes. */
export interface RunToStore {
  runId: string
  result: RunResult
  /** The run's emails: the list email, and an insight email when there is one. */
  emails: readonly EmailToQueue[]
  /**
   * An insight email is queued only if the alert's last one is at least this old (ms)
   * when the alert row is locked: runs of one alert stored at once send at most one.
   */
  insightMinIntervalMs: number
  /** The NOTIFY channel of the email outbox, woken once the statement commits. */
  channel: string
}

/**
 * Stores a run, in one statement: locks the run while it is `queued` and its alert, inserts
 * the items, marks the run done, moves the alert's `last_run_at` (and `last_insight_at` when
 * an insight email goes), queues the emails (unique per alert, due time and kind) and wakes
 * the email senders on commit. Resolves to false, writing nothing, when the run was no longer
 * queued (stored by an earlier attempt, or ended otherwise).
 */
export async function storeRun(db: Db, input: RunToStore): Promise<boolean> {
  const { result } = input
  const cheapest = result.items[0]
  const items = result.items.map((item, position) => ({
    position,
    item_id: item.itemId,
    title: item.title,
    price: item.price,
    currency: item.currency,
    shipping: item.shipping,
    total: item.total,
    item_web_url: item.itemWebUrl,
    image_url: item.imageUrl,
  }))
  const emails = input.emails.map((e) => ({
    id: e.id,
    kind: e.kind,
    recipient: e.recipient,
    subject: e.subject,
    html: e.html,
    text: e.text,
    headers: e.headers,
    expires_at: e.expiresAt.toISOString(),
  }))
  const skipped = result.skipped.length > 0 ? JSON.stringify(result.skipped.map((s) => ({ item_id: s.itemId, reason: s.reason }))) : null
  const { rows } = await sql<{ stored: boolean }>`
    with run as (
      select id, alert_id, due_at, attempts from alert_runs where id = ${input.runId} and status = 'queued' for update
    ), alert as (
      select a.id, a.last_insight_at from alerts a join run on a.id = run.alert_id for update of a
    ), insight_allowed as (
      select coalesce(bool_and(last_insight_at is null
        or last_insight_at <= run.due_at - ${input.insightMinIntervalMs}::double precision * interval '1 millisecond'), false) as yes
      from alert, run
    ), items as (
      insert into alert_items (run_id, position, item_id, title, price, currency, shipping, total, item_web_url, image_url)
      select run.id, i.position, i.item_id, i.title, i.price, i.currency, i.shipping, i.total, i.item_web_url, i.image_url
      from run, jsonb_to_recordset(${JSON.stringify(items)}::jsonb) as i(
        position smallint, item_id text, title text, price numeric, currency text, shipping numeric, total numeric,
        item_web_url text, image_url text)
    ), done as (
      update alert_runs r set status = 'done', attempts = run.attempts + 1, item_count = ${result.items.length},
        result_total = ${result.resultTotal}, cheapest_total = ${cheapest?.total ?? null}::numeric,
        cheapest_currency = ${cheapest?.currency ?? null}, skipped_items = ${skipped}::jsonb, error = null, finished_at = now()
      from run where r.id = run.id
    ), queued as (
      insert into alert_emails (id, alert_id, run_id, due_at, kind, recipient, subject, html, text, headers, expires_at)
      select e.id, run.alert_id, run.id, run.due_at, e.kind, e.recipient, e.subject, e.html, e.text, e.headers, e.expires_at
      from run, insight_allowed, jsonb_to_recordset(${JSON.stringify(emails)}::jsonb) as e(
        id text, kind text, recipient text, subject text, html text, text text, headers jsonb, expires_at timestamptz)
      where e.kind = 'list' or insight_allowed.yes
      on conflict on constraint alert_emails_once do nothing
      returning kind
    ), touched as (
      update alerts a set last_run_at = greatest(a.last_run_at, run.due_at),
        last_insight_at = case when exists (select 1 from queued where kind = 'insight') then run.due_at else a.last_insight_at end
      from run where a.id = run.alert_id
    )
    select exists (select 1 from run) as stored,
      (select count(*) from (select pg_notify(${input.channel}, '') from run) as n) as notified
  `.execute(db)
  return rows[0]?.stored === true
}
