/**
 * The API booted for the alerts' tests (the trading test bench: a migrated schema, the
 * test Redis database, users `user1` and `user2` with tokens and an admin token), with
 * its own BullMQ key prefix, and rows the alerts' worker would write (runs and the items
 * they found) put straight into PostgreSQL.
 */
import { sql } from 'kysely'
import type { Db } from '../../src/database.ts'
import { uniqueName } from './infra.ts'
import { openTradingApi, type TradingApi } from './trading.ts'

/** Boots the API with extra environment; the queues get a key prefix of their own. */
export async function openAlertsApi(extra: Record<string, string> = {}): Promise<TradingApi> {
  return openTradingApi({ QUEUE_PREFIX: uniqueName('bull'), ...extra })
}

/** A run as a test writes it. */
export interface RunSpec {
  dueAt: string
  status?: 'queued' | 'done' | 'failed' | 'skipped'
  attempts?: number
  itemCount?: number | null
  resultTotal?: number | null
  cheapestTotal?: string | null
  cheapestCurrency?: string | null
  skippedItems?: Array<{ item_id: string | null; reason: string }> | null
  error?: string | null
  finishedAt?: string | null
}

/** Inserts runs of alert `alertId`; returns their ids in order. */
export async function insertRuns(db: Db, alertId: string, runs: RunSpec[]): Promise<string[]> {
  if (runs.length === 0) return []
  const rows = await db
    .insertInto('alert_runs')
    .values(
      runs.map((run) => ({
        alert_id: alertId,
        due_at: run.dueAt,
        status: run.status ?? 'done',
        attempts: run.attempts ?? 1,
        item_count: run.itemCount ?? null,
        result_total: run.resultTotal ?? null,
        cheapest_total: run.cheapestTotal ?? null,
        cheapest_currency: run.cheapestCurrency ?? null,
        skipped_items: run.skippedItems === undefined || run.skippedItems === null ? null : JSON.stringify(run.skippedItems),
        error: run.error ?? null,
        finished_at: run.finishedAt ?? null,
      })),
    )
    .returning('id')
    .execute()
  return rows.map((row) => row.id)
}

/** Inserts `count` items of run `runId` at positions 0.., priced `10 + position`. */
export async function insertItems(db: Db, runId: string, count: number): Promise<void> {
  if (count === 0) return
  await db
    .insertInto('alert_items')
    .values(
      Array.from({ length: count }, (_, position) => ({
        run_id: runId,
        position,
        item_id: `v1|${runId}${position}|0`,
        title: `Item ${position} of run ${runId}`,
        price: `${10 + position}.99`,
        currency: 'EUR',
        shipping: position % 2 === 0 ? '0.00' : null,
        total: `${10 + position}.99`,
        item_web_url: `https://www.ebay.de/itm/${runId}${position}`,
        image_url: position % 2 === 0 ? `https://i.ebayimg.com/${runId}${position}.jpg` : null,
      })),
    )
    .execute()
}

/** Inserts `count` done runs of alert `alertId`, one per minute from `from`, their cheapest total the minute's number. */
export async function insertDoneRunSeries(db: Db, alertId: string, from: string, count: number): Promise<void> {
  await sql`
    insert into alert_runs (alert_id, due_at, status, attempts, item_count, result_total, cheapest_total, cheapest_currency, finished_at)
    select ${alertId}::bigint, ${from}::timestamptz + n * interval '1 minute', 'done', 1, 1, 1, n + 1, 'EUR', ${from}::timestamptz + n * interval '1 minute'
    from generate_series(0, ${count - 1}) as n
  `.execute(db)
}
