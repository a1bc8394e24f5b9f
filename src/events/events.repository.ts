/**
 * Reading stored events and event errors (The Eye), a keyset page at a time.
 *
 * Every query is shaped for an index of migration 0002, so a page costs the same however
 * deep it is: the filters with equalities come first (`session_id`, `app_id`,
 * `category` + `name`), the time range and the cursor then bound the scan on
 * `(occurred_at, id)` (events) or `(stored_at, id)` (errors), and the order is the
 * index's own. Filters without an index of their own (a category alone, a name alone)
 * walk the time index and skip what does not match; categories and names are few, so
 * each is a large share of the rows and the walk stops soon. `events.query.test.ts`
 * checks every filter's plan with EXPLAIN.
 *
 * Timestamps leave PostgreSQL as text with microseconds (a JavaScript `Date` keeps only
 * milliseconds), in the answers and in the cursors: a cursor holds the exact key of the
 * last row, so the next page starts strictly after it even when rows share a millisecond.
 */
import { type Expression, type SqlBool, sql } from 'kysely'
import type { Db } from '../database.ts'
import type { EventErrorRow, EventRow } from './db/tables.ts'
import { keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'

/** The timestamp columns, which the queries read as ISO 8601 text in UTC with microseconds. */
type TimesAsText<Row, K extends keyof Row> = Omit<Row, K> & { [P in K]: string }

/** A stored event as the queries read it (`occurred_at` is the event's own timestamp). */
export type StoredEvent = TimesAsText<EventRow, 'occurred_at' | 'received_at' | 'stored_at'>

/** A stored event error as the queries read it. */
export type StoredEventError = TimesAsText<EventErrorRow, 'received_at' | 'stored_at'>

/** Filters of {@link listEvents}; each one given narrows the result. */
export interface EventFilter {
  appId?: string | undefined
  sessionId?: string | undefined
  category?: string | undefined
  name?: string | undefined
  /** Earliest `occurred_at`, inclusive (text PostgreSQL reads as a timestamptz). */
  from?: string | undefined
  /** Latest `occurred_at`, exclusive. */
  to?: string | undefined
}

/** Filters of {@link listEventErrors}; the time range applies to `stored_at`. */
export interface EventErrorFilter {
  appId?: string | undefined
  /** Only errors of this session (errors without a usable session never match). */
  sessionId?: string | undefined
  category?: string | undefined
  name?: string | undefined
  /** Earliest `stored_at`, inclusive. */
  from?: string | undefined
  /** Latest `stored_at`, exclusive. */
  to?: string | undefined
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A timestamptz column as `2021-01-01T09:15:27.243860Z`. */
function isoText(column: 'occurred_at' | 'received_at' | 'stored_at') {
  return sql<string>`to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
}

/** Text PostgreSQL reads as a timestamptz, as a bound of a time column. */
function instant(text: string) {
  return sql<Date>`${text}::timestamptz`
}

/**
 * `(time, id) < cursor` (or `>`), as one row comparison: PostgreSQL turns it into a single
 * index bound on `(time, id)` instead of an `or` it could only filter with. Undefined on
 * the first page; throws `InvalidCursorError` for a foreign cursor.
 */
function afterCursor(column: 'occurred_at' | 'stored_at', direction: 'asc' | 'desc', cursor: string | undefined): Expression<SqlBool> | undefined {
  const after = readCursor(cursor, ['at', 'id'], ({ at, id }) => /^\d{4}-\d{2}-\d{2}T[\d:.]+Z$/.test(at) && uuidPattern.test(id))
  if (!after) return undefined
  const op = sql.raw(direction === 'desc' ? '<' : '>')
  return sql<SqlBool>`(${sql.ref(column)}, id) ${op} (${after.at}::timestamptz, ${after.id}::uuid)`
}

function selectEvents(db: Db) {
  return db
    .selectFrom('events')
    .select(['id', 'app_id', 'session_id', 'category', 'name', 'data', 'validated'])
    .select([isoText('occurred_at').as('occurred_at'), isoText('received_at').as('received_at'), isoText('stored_at').as('stored_at')])
}

/** Events newest first by `(occurred_at, id)`, narrowed by `filter`. */
export async function listEvents(db: Db, filter: EventFilter, page: PageRequest): Promise<Page<StoredEvent>> {
  let query = selectEvents(db)
  if (filter.sessionId !== undefined) query = query.where('session_id', '=', filter.sessionId)
  if (filter.appId !== undefined) query = query.where('app_id', '=', filter.appId)
  if (filter.category !== undefined) query = query.where('category', '=', filter.category)
  if (filter.name !== undefined) query = query.where('name', '=', filter.name)
  if (filter.from !== undefined) query = query.where('occurred_at', '>=', instant(filter.from))
  if (filter.to !== undefined) query = query.where('occurred_at', '<', instant(filter.to))
  const after = afterCursor('occurred_at', 'desc', page.cursor)
  if (after) query = query.where(after)
  const rows = await query
    .orderBy('events.occurred_at', 'desc')
    .orderBy('events.id', 'desc')
    .limit(page.limit + 1)
    .execute()
  return keysetPage(rows, page.limit, (last) => [last.occurred_at, last.id])
}

/**
 * One session's events in the order they happened, by `(occurred_at, id)` ascending:
 * the `events_session` index read forwards. With `appId`, only that application's.
 */
export async function listSessionEvents(
  db: Db,
  sessionId: string,
  filter: { appId?: string | undefined },
  page: PageRequest,
): Promise<Page<StoredEvent>> {
  let query = selectEvents(db).where('session_id', '=', sessionId)
  if (filter.appId !== undefined) query = query.where('app_id', '=', filter.appId)
  const after = afterCursor('occurred_at', 'asc', page.cursor)
  if (after) query = query.where(after)
  const rows = await query
    .orderBy('events.occurred_at', 'asc')
    .orderBy('events.id', 'asc')
    .limit(page.limit + 1)
    .execute()
  return keysetPage(rows, page.limit, (last) => [last.occurred_at, last.id])
}

/** Event errors newest first by `(stored_at, id)`, narrowed by `filter`. */
export async function listEventErrors(
  db: Db,
  filter: EventErrorFilter,
  page: PageRequest,
): Promise<Page<StoredEventError>> {
  let query = db
    .selectFrom('event_errors')
    .select(['id', 'app_id', 'session_id', 'category', 'name', 'raw', 'reasons'])
    .select([isoText('received_at').as('received_at'), isoText('stored_at').as('stored_at')])
  if (filter.appId !== undefined) query = query.where('app_id', '=', filter.appId)
  if (filter.sessionId !== undefined) query = query.where('session_id', '=', filter.sessionId)
  if (filter.category !== undefined) query = query.where('category', '=', filter.category)
  if (filter.name !== undefined) query = query.where('name', '=', filter.name)
  if (filter.from !== undefined) query = query.where('stored_at', '>=', instant(filter.from))
  if (filter.to !== undefined) query = query.where('stored_at', '<', instant(filter.to))
  const after = afterCursor('stored_at', 'desc', page.cursor)
  if (after) query = query.where(after)
  const rows = await query
    .orderBy('event_errors.stored_at', 'desc')
    .orderBy('event_errors.id', 'desc')
    .limit(page.limit + 1)
    .execute()
  return keysetPage(rows, page.limit, (last) => [last.stored_at, last.id])
}

/**
 * The application an `app` filter names: by id when it is a UUID (application names
 * never look like one), otherwise by name. Revoked applications are found too: their
 * events stay readable.
 */
export async function findAppByIdOrName(db: Db, idOrName: string): Promise<{ id: string; name: string } | undefined> {
  const column = uuidPattern.test(idOrName) ? 'id' : 'name'
  return db.selectFrom('apps').select(['id', 'name']).where(column, '=', idOrName).executeTakeFirst()
}

/** The names of the applications with these ids (one query through the primary key). */
export async function appNamesById(db: Db, ids: Iterable<string>): Promise<Map<string, string>> {
  const unique = [...new Set(ids)]
  if (unique.length === 0) return new Map()
  const rows = await db.selectFrom('apps').select(['id', 'name']).where('id', 'in', unique).execute()
  return new Map(rows.map((row) => [row.id, row.name]))
}
