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
import { type Expression, type SelectQueryBuilder, type SqlBool, sql } from 'kysely'
import type { Database, Db } from '../database.ts'
import type { EventErrorRow, EventRow } from './db/tables.ts'
import { isCursorInstant, isCursorUuid, keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'

/** The timestamp columns, which the queries read as ISO 8601 text in UTC with microseconds. */
type TimesAsText<Row, K extends keyof Row> = Omit<Row, K> & { [P in K]: string }

/** A stored event as the queries read it (`occurred_at` is the event's own timestamp). */
export type StoredEvent = TimesAsText<EventRow, 'occurred_at' | 'received_at' | 'stored_at'>

/** A stored event error as the queries read it. */
export type StoredEventError = TimesAsText<EventErrorRow, 'received_at' | 'stored_at'>

/** The equality filters events and event errors share; each one given narrows the result. */
interface SourceFilter {
  appId?: string | undefined
  /** Only rows of this session (errors without a usable session never match). */
  sessionId?: string | undefined
  category?: string | undefined
  name?: string | undefined
}

/** Filters of {@link listEvents}. */
export interface EventFilter extends SourceFilter {
  /** Earliest `occurred_at`, inclusive (text PostgreSQL reads as a timestamptz). */
  from?: string | undefined
  /** Latest `occurred_at`, exclusive. */
  to?: string | undefined
}

/** Filters of {@link listEventErrors}; the time range applies to `stored_at`. */
export interface EventErrorFilter extends SourceFilter {
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
  const after = readCursor(cursor, ['at', 'id'], ({ at, id }) => isCursorInstant(at) && isCursorUuid(id))
  if (!after) return undefined
  const op = sql.raw(direction === 'desc' ? '<' : '>')
  return sql<SqlBool>`(${sql.ref(column)}, id) ${op} (${after.at}::timestamptz, ${after.id}::uuid)`
}

/** `query` narrowed by the filters events and event errors share, the time range on `time`. */
function narrowed<T extends 'events' | 'event_errors', O>(
  query: SelectQueryBuilder<Database, T, O>,
  filter: EventFilter | EventErrorFilter,
  time: 'occurred_at' | 'stored_at',
): SelectQueryBuilder<Database, T, O> {
  const equal = { session_id: filter.sessionId, app_id: filter.appId, category: filter.category, name: filter.name }
  for (const [column, value] of Object.entries(equal)) {
    if (value !== undefined) query = query.where(sql.ref(column), '=', value)
  }
  if (filter.from !== undefined) query = query.where(sql.ref(time), '>=', instant(filter.from))
  if (filter.to !== undefined) query = query.where(sql.ref(time), '<', instant(filter.to))
  return query
}

/**
 * One page of `query` in `(time, id)` order from the cursor on, plus one row to tell
 * whether there is a next page. The order names the time column with its table: the
 * select gives the column's text form the same name, and ORDER BY would sort that text.
 */
async function readPage<
  T extends 'events' | 'event_errors',
  K extends 'occurred_at' | 'stored_at',
  O extends { id: string } & Record<K, string>,
>(query: SelectQueryBuilder<Database, T, O>, order: { table: T; column: K; direction: 'asc' | 'desc' }, page: PageRequest): Promise<Page<O>> {
  const after = afterCursor(order.column, order.direction, page.cursor)
  const rows = await (after ? query.where(after) : query)
    .orderBy(sql.ref(`${order.table}.${order.column}`), order.direction)
    .orderBy(sql.ref(`${order.table}.id`), order.direction)
    .limit(page.limit + 1)
    .execute()
  return keysetPage(rows, page.limit, (last) => [last[order.column], last.id])
}

function selectEvents(db: Db) {
  return db
    .selectFrom('events')
    .select(['id', 'app_id', 'session_id', 'category', 'name', 'data', 'validated'])
    .select([isoText('occurred_at').as('occurred_at'), isoText('received_at').as('received_at'), isoText('stored_at').as('stored_at')])
}

/** Events newest first by `(occurred_at, id)`, narrowed by `filter`. */
export async function listEvents(db: Db, filter: EventFilter, page: PageRequest): Promise<Page<StoredEvent>> {
  const query = narrowed(selectEvents(db), filter, 'occurred_at')
  return readPage(query, { table: 'events', column: 'occurred_at', direction: 'desc' }, page)
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
  return readPage(query, { table: 'events', column: 'occurred_at', direction: 'asc' }, page)
}

/** Event errors newest first by `(stored_at, id)`, narrowed by `filter`. */
export async function listEventErrors(
  db: Db,
  filter: EventErrorFilter,
  page: PageRequest,
): Promise<Page<StoredEventError>> {
  const selected = db
    .selectFrom('event_errors')
    .select(['id', 'app_id', 'session_id', 'category', 'name', 'raw', 'reasons'])
    .select([isoText('received_at').as('received_at'), isoText('stored_at').as('stored_at')])
  const query = narrowed(selected, filter, 'stored_at')
  return readPage(query, { table: 'event_errors', column: 'stored_at', direction: 'desc' }, page)
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
