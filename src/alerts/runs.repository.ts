/**
 * The runs side of the alerts tables: what a worker reads before a run and writes after
 * it. Storing a run (its items, its emails in the outbox, the run marked done) is one
 * transaction that takes the run's row lock first and only writes while the run is
 * `queued`: a retried or duplicated job, or a worker killed after the commit, can never
 * store a run twice.
 */
import { sql, type Transaction } from 'kysely'
import type { Database, Db } from '../database.ts'
import type { AlertRow, AlertRunRow } from './db/tables.ts'
import type { EbayItem } from './ebay.client.ts'
import type { RunSummary } from './insights.ts'

/** A run with its alert (null when the alert was deleted). */
export interface RunWithAlert {
  run: AlertRunRow
  alert: AlertRow | null
}

/** The run `runId` and its alert; undefined when the run is gone (its alert was deleted). */
export async function loadRun(db: Db, runId: string): Promise<RunWithAlert | undefined> {
  const run = await db.selectFrom('alert_runs').selectAll().where('id', '=', runId).executeTakeFirst()
  if (!run) return undefined
  const alert = await db.selectFrom('alerts').selectAll().where('id', '=', run.alert_id).executeTakeFirst()
  return { run, alert: alert ?? null }
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

/**
 * Locks a run for storing its result; undefined when it is no longer queued (stored by an
 * earlier attempt, or ended otherwise): the caller then writes nothing.
 */
export async function lockQueuedRun(trx: Transaction<Database>, runId: string): Promise<AlertRunRow | undefined> {
  return trx.selectFrom('alert_runs').selectAll().where('id', '=', runId).where('status', '=', 'queued').forUpdate().executeTakeFirst()
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

/** Stores a locked run's items and marks it done (inside the transaction that locked it). */
export async function storeRunResult(
  trx: Transaction<Database>,
  run: Pick<AlertRunRow, 'id' | 'alert_id' | 'due_at' | 'attempts'>,
  result: RunResult,
): Promise<void> {
  if (result.items.length > 0) {
    await trx
      .insertInto('alert_items')
      .values(
        result.items.map((item, position) => ({
          run_id: run.id,
          position,
          item_id: item.itemId,
          title: item.title,
          price: item.price,
          currency: item.currency,
          shipping: item.shipping,
          total: item.total,
          item_web_url: item.itemWebUrl,
          image_url: item.imageUrl,
        })),
      )
      .execute()
  }
  const cheapest = result.items[0]
  await trx
    .updateTable('alert_runs')
    .set({
      status: 'done',
      attempts: run.attempts + 1,
      item_count: result.items.length,
      result_total: result.resultTotal,
      cheapest_total: cheapest?.total ?? null,
      cheapest_currency: cheapest?.currency ?? null,
      skipped_items:
        result.skipped.length > 0 ? JSON.stringify(result.skipped.map((s) => ({ item_id: s.itemId, reason: s.reason }))) : null,
      error: null,
      finished_at: sql<Date>`now()`,
    })
    .where('id', '=', run.id)
    .execute()
  await trx
    .updateTable('alerts')
    .set({ last_run_at: sql<Date>`greatest(last_run_at, ${run.due_at}::timestamptz)` })
    .where('id', '=', run.alert_id)
    .execute()
}

/**
 * The done runs of an alert due in `[from, to)`, each with its cheapest item (what the
 * insight rules read).
 */
export async function runSummaries(
  trx: Transaction<Database> | Db,
  alertId: string,
  from: Date,
  to: Date,
): Promise<RunSummary[]> {
  const rows = await trx
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

/** An email to put in the outbox. */
export interface EmailToQueue {
  /** Outbox row id, also the Message-ID's local part. */
  id: string
  alertId: string
  runId: string
  dueAt: Date
  kind: 'list' | 'insight'
  recipient: string
  subject: string
  html: string
  text: string
  headers: Record<string, string>
  /** Until when a failing send is retried. */
  expiresAt: Date
}

/** Puts an email in the outbox, once per (alert, due time, kind). True when it was new. */
export async function queueEmail(trx: Transaction<Database>, email: EmailToQueue): Promise<boolean> {
  const row = await trx
    .insertInto('alert_emails')
    .values({
      id: email.id,
      alert_id: email.alertId,
      run_id: email.runId,
      due_at: email.dueAt,
      kind: email.kind,
      recipient: email.recipient,
      subject: email.subject,
      html: email.html,
      text: email.text,
      headers: JSON.stringify(email.headers),
      expires_at: email.expiresAt,
    })
    .onConflict((oc) => oc.constraint('alert_emails_once').doNothing())
    .returning('id')
    .executeTakeFirst()
  return row !== undefined
}

/** Records that an insight email went out for the alert at `at` (the once-a-day rule reads it). */
export async function markInsightSent(trx: Transaction<Database>, alertId: string, at: Date): Promise<void> {
  await trx.updateTable('alerts').set({ last_insight_at: at }).where('id', '=', alertId).execute()
}
