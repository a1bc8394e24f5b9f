/**
 * The alerts' rows: saved searches, their runs and the items found, as the API reads and
 * changes them. Every function taking an `ownerId` acts only on that user's alerts
 * (undefined: any user's, for admins), so another user's alert is simply not found.
 *
 * Duplicates (same user, address, phrase key and frequency) are decided by the unique
 * constraint `alerts_one_per_search`, never by a look-up before the write, so two
 * concurrent creations cannot both succeed.
 */
import { type Expression, type SqlBool, sql } from 'kysely'
import type { Db } from '../database.ts'
import { isCursorInstant, isCursorInteger, keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'
import type { AlertRow, AlertStatus, PausedBy } from './db/tables.ts'

/** The constraint that makes an alert unique per (user, email, phrase key, frequency). */
export const ONE_PER_SEARCH = 'alerts_one_per_search'

/** A new alert, its values already checked and normalized. */
export interface NewAlert {
  userId: string
  email: string
  phrase: string
  phraseKey: string
  frequencyMinutes: number
  maxPrice: string | null
  currency: string | null
  /** Its first run: the first scheduler tick after now. */
  nextRunAt: Date
}

/** What a creation or a change did: the alert, or the id of the one it would duplicate. */
export type AlertWrite = { alert: AlertRow } | { duplicateOf: string }

/** Thrown when an alert names a user that does not exist. */
export class UnknownUserError extends Error {
  override name = 'UnknownUserError'
  /** The user named. */
  readonly userId: string
  constructor(userId: string) {
    super(`user ${userId} does not exist`)
    this.userId = userId
  }
}

function isViolation(err: unknown, code: string, constraint: string): boolean {
  const e = err as { code?: unknown; constraint?: unknown }
  return e.code === code && e.constraint === constraint
}

/** The id of the alert holding this (user, email, phrase key, frequency), other than `except`. */
async function duplicateId(
  db: Db,
  key: { userId: string; email: string; phraseKey: string; frequencyMinutes: number },
  except?: string,
): Promise<string | undefined> {
  let query = db
    .selectFrom('alerts')
    .select('id')
    .where('user_id', '=', key.userId)
    .where('email', '=', key.email)
    .where('phrase_key', '=', key.phraseKey)
    .where('frequency_minutes', '=', key.frequencyMinutes)
  if (except !== undefined) query = query.where('id', '<>', except)
  return (await query.executeTakeFirst())?.id
}

/**
 * How often a write that lost to a duplicate looks for it and, when that alert was deleted
 * in between, tries again: two rounds are enough unless someone keeps recreating and
 * deleting it.
 */
const WRITE_ROUNDS = 3

/** Inserts an alert; a duplicate is answered with its id (see {@link AlertWrite}). */
export async function createAlert(db: Db, alert: NewAlert): Promise<AlertWrite> {
  for (let round = 1; ; round++) {
    let row: AlertRow | undefined
    try {
      row = await db
        .insertInto('alerts')
        .values({
          user_id: alert.userId,
          email: alert.email,
          phrase: alert.phrase,
          phrase_key: alert.phraseKey,
          frequency_minutes: alert.frequencyMinutes,
          max_price: alert.maxPrice,
          currency: alert.currency,
          next_run_at: alert.nextRunAt,
        })
        .onConflict((oc) => oc.constraint(ONE_PER_SEARCH).doNothing())
        .returningAll()
        .executeTakeFirst()
    } catch (err) {
      if (isViolation(err, '23503', 'alerts_user_id_fkey')) throw new UnknownUserError(alert.userId)
      throw err
    }
    if (row) return { alert: row }
    const existing = await duplicateId(db, alert)
    if (existing !== undefined) return { duplicateOf: existing }
    if (round === WRITE_ROUNDS) throw new Error(`alert insert kept conflicting with an alert that is gone (${round} rounds)`)
  }
}

/** The alert, if it exists (and belongs to `ownerId` when given). */
export async function findAlert(db: Db, id: string, ownerId?: string): Promise<AlertRow | undefined> {
  let query = db.selectFrom('alerts').selectAll().where('id', '=', id)
  if (ownerId !== undefined) query = query.where('user_id', '=', ownerId)
  return query.executeTakeFirst()
}

/** Which alerts a list shows. */
export interface AlertFilter {
  userId?: string | undefined
  email?: string | undefined
  status?: AlertStatus | undefined
}

/** Alerts, newest first (id descending), a keyset page at a time. */
export async function listAlerts(db: Db, filter: AlertFilter, page: PageRequest): Promise<Page<AlertRow>> {
  let query = db.selectFrom('alerts').selectAll()
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId)
  if (filter.email !== undefined) query = query.where('email', '=', filter.email)
  if (filter.status !== undefined) query = query.where('status', '=', filter.status)
  const after = readCursor(page.cursor, ['id'], ({ id }) => isCursorInteger(id, 1n))
  if (after) query = query.where('id', '<', after.id)
  const rows = await query.orderBy('id', 'desc').limit(page.limit + 1).execute()
  return keysetPage(rows, page.limit, (last) => [last.id])
}

/** The changes of an alert, checked and normalized; absent fields stay as they are. */
export interface AlertChanges {
  email?: string
  phrase?: string
  phraseKey?: string
  frequencyMinutes?: number
  maxPrice?: string | null
  currency?: string | null
}

/**
 * Changes an alert. A new phrase key or frequency is a new search: its next run moves to
 * `nextRunAt` (the next tick), in the same statement, so the comparison is with the row
 * as it is. Undefined when there is no such alert (of `ownerId`).
 */
export async function updateAlert(
  db: Db,
  id: string,
  ownerId: string | undefined,
  changes: AlertChanges,
  nextRunAt: Date,
): Promise<AlertWrite | undefined> {
  const searchChanged: Expression<SqlBool>[] = []
  if (changes.phraseKey !== undefined) searchChanged.push(sql<SqlBool>`phrase_key <> ${changes.phraseKey}`)
  if (changes.frequencyMinutes !== undefined) searchChanged.push(sql<SqlBool>`frequency_minutes <> ${changes.frequencyMinutes}`)
  const moved =
    searchChanged.length === 0
      ? sql<Date>`next_run_at`
      : sql<Date>`case when ${sql.join(searchChanged, sql` or `)} then ${nextRunAt} else next_run_at end`
  for (let round = 1; ; round++) {
    let query = db
      .updateTable('alerts')
      .set({
        ...(changes.email !== undefined && { email: changes.email }),
        ...(changes.phrase !== undefined && { phrase: changes.phrase }),
        ...(changes.phraseKey !== undefined && { phrase_key: changes.phraseKey }),
        ...(changes.frequencyMinutes !== undefined && { frequency_minutes: changes.frequencyMinutes }),
        ...(changes.maxPrice !== undefined && { max_price: changes.maxPrice }),
        ...(changes.currency !== undefined && { currency: changes.currency }),
        next_run_at: moved,
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', id)
    if (ownerId !== undefined) query = query.where('user_id', '=', ownerId)
    try {
      const row = await query.returningAll().executeTakeFirst()
      return row && { alert: row }
    } catch (err) {
      if (!isViolation(err, '23505', ONE_PER_SEARCH)) throw err
    }
    // The change would duplicate another alert: name it (the row itself is unchanged).
    const current = await findAlert(db, id, ownerId)
    if (!current) return undefined
    const existing = await duplicateId(
      db,
      {
        userId: current.user_id,
        email: changes.email ?? current.email,
        phraseKey: changes.phraseKey ?? current.phrase_key,
        frequencyMinutes: changes.frequencyMinutes ?? current.frequency_minutes,
      },
      id,
    )
    if (existing !== undefined) return { duplicateOf: existing }
    if (round === WRITE_ROUNDS) throw new Error(`alert update kept conflicting with an alert that is gone (${round} rounds)`)
  }
}

/** Deletes an alert (its runs, items and emails go with it); whether there was one. */
export async function deleteAlert(db: Db, id: string, ownerId?: string): Promise<boolean> {
  let query = db.deleteFrom('alerts').where('id', '=', id)
  if (ownerId !== undefined) query = query.where('user_id', '=', ownerId)
  const result = await query.executeTakeFirst()
  return result.numDeletedRows > 0n
}

/**
 * Pauses an alert, saying who did. Pausing a paused alert changes nothing (it keeps who
 * paused it first, and its `updated_at`). Undefined when there is no such alert.
 */
export async function pauseAlert(db: Db, id: string, ownerId: string | undefined, by: PausedBy): Promise<AlertRow | undefined> {
  let query = db
    .updateTable('alerts')
    .set({ status: 'paused', paused_by: by, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', '=', 'active')
  if (ownerId !== undefined) query = query.where('user_id', '=', ownerId)
  return (await query.returningAll().executeTakeFirst()) ?? findAlert(db, id, ownerId)
}

/**
 * Resumes a paused alert: active again, its next run at `nextRunAt` (the next tick).
 * Resuming an active alert changes nothing (its schedule stays). Undefined when there is
 * no such alert.
 */
export async function resumeAlert(db: Db, id: string, ownerId: string | undefined, nextRunAt: Date): Promise<AlertRow | undefined> {
  let query = db
    .updateTable('alerts')
    .set({ status: 'active', paused_by: null, next_run_at: nextRunAt, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', '=', 'paused')
  if (ownerId !== undefined) query = query.where('user_id', '=', ownerId)
  return (await query.returningAll().executeTakeFirst()) ?? findAlert(db, id, ownerId)
}

/** A timestamp column as ISO 8601 text in UTC with microseconds (cursor keys keep them all). */
function isoText(column: string) {
  return sql<string>`to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

/** A run as the API lists it. */
export interface RunRow {
  id: string
  due_at: string
  status: string
  attempts: number
  item_count: number | null
  result_total: number | null
  cheapest_total: string | null
  cheapest_currency: string | null
  skipped_items: Array<{ item_id: string | null; reason: string }> | null
  error: string | null
  finished_at: Date | null
}

/** The runs of an alert, newest due time first (one run per due time), a keyset page at a time. */
export async function listRuns(db: Db, alertId: string, page: PageRequest): Promise<Page<RunRow>> {
  let query = db
    .selectFrom('alert_runs')
    .select(['id', 'status', 'attempts', 'item_count', 'result_total', 'cheapest_total', 'cheapest_currency', 'skipped_items', 'error', 'finished_at'])
    .select(isoText('due_at').as('due_at'))
    .where('alert_id', '=', alertId)
  const after = readCursor(page.cursor, ['due'], ({ due }) => isCursorInstant(due))
  if (after) query = query.where(sql<SqlBool>`due_at < ${after.due}::timestamptz`)
  const rows = await query.orderBy(sql`alert_runs.due_at`, 'desc').limit(page.limit + 1).execute()
  return keysetPage(rows, page.limit, (last) => [last.due_at])
}

/** Whether run `runId` is one of alert `alertId`'s. */
export async function isRunOf(db: Db, alertId: string, runId: string): Promise<boolean> {
  const row = await db.selectFrom('alert_runs').select('id').where('id', '=', runId).where('alert_id', '=', alertId).executeTakeFirst()
  return row !== undefined
}

/** An item as the API lists it, with its run's due time. */
export interface ItemRow {
  run_id: string
  due_at: string
  position: number
  item_id: string
  title: string
  price: string
  currency: string
  shipping: string | null
  total: string
  item_web_url: string
  image_url: string | null
}

/**
 * The items an alert's runs found: the newest run first, each run's items by position, a
 * keyset page at a time over (run due time, position): a run's due time is unique among
 * the alert's runs.
 */
export async function listItems(db: Db, alertId: string, filter: { runId?: string | undefined }, page: PageRequest): Promise<Page<ItemRow>> {
  let query = db
    .selectFrom('alert_items as i')
    .innerJoin('alert_runs as r', 'r.id', 'i.run_id')
    .select(['i.run_id', 'i.position', 'i.item_id', 'i.title', 'i.price', 'i.currency', 'i.shipping', 'i.total', 'i.item_web_url', 'i.image_url'])
    .select(isoText('r.due_at').as('due_at'))
    .where('r.alert_id', '=', alertId)
  if (filter.runId !== undefined) query = query.where('r.id', '=', filter.runId)
  const after = readCursor(page.cursor, ['due', 'position'], ({ due, position }) => isCursorInstant(due) && isCursorInteger(position, 0n, 32767n))
  if (after) {
    query = query.where(
      sql<SqlBool>`(r.due_at < ${after.due}::timestamptz or (r.due_at = ${after.due}::timestamptz and i.position > ${Number(after.position)}))`,
    )
  }
  const rows = await query
    .orderBy(sql`r.due_at`, 'desc')
    .orderBy('i.position', 'asc')
    .limit(page.limit + 1)
    .execute()
  return keysetPage(rows, page.limit, (last) => [last.due_at, String(last.position)])
}

/** One point of a price history. */
export interface PricePoint {
  due_at: string
  cheapest_total: string
  currency: string
}

/**
 * The cheapest total of each done run of an alert due in [from, to), oldest first: at most
 * `limit` points, the newest of them when there are more (`truncated`).
 */
export async function priceHistory(
  db: Db,
  alertId: string,
  range: { from?: Date | undefined; to?: Date | undefined },
  limit: number,
): Promise<{ points: PricePoint[]; truncated: boolean }> {
  let query = db
    .selectFrom('alert_runs')
    .select(['cheapest_total', 'cheapest_currency'])
    .select(isoText('due_at').as('due_text'))
    .where('alert_id', '=', alertId)
    .where('status', '=', 'done')
    .where('cheapest_total', 'is not', null)
  if (range.from) query = query.where('due_at', '>=', range.from)
  if (range.to) query = query.where('due_at', '<', range.to)
  const rows = await query.orderBy('due_at', 'desc').limit(limit + 1).execute()
  const points = rows.slice(0, limit).reverse()
  return {
    points: points.map((row) => ({ due_at: row.due_text, cheapest_total: row.cheapest_total ?? '', currency: row.cheapest_currency ?? '' })),
    truncated: rows.length > limit,
  }
}
