/**
 * Service reports in PostgreSQL: storing them (from the HTTP API, or moved from the Redis
 * stream), paging them newest first with filters, and keeping them within the retention.
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import { isCursorInstant, isCursorInteger, keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'
import type { ReportLevel } from '../platform/reports.ts'
import type { ServiceReportRow } from './db/tables.ts'

/** A report to store. */
export interface NewReport {
  level: ReportLevel
  service: string
  instance: string | null
  status: string
  data: Record<string, unknown>
  reportedAt: Date
  /** The token that filed it over HTTP; null for a service's own. */
  filedBy: string | null
  /** The stream entry it was moved from (`1700000000000-0`); null when filed over HTTP. */
  streamId: string | null
}

/** Filters of {@link listReports}; each one given must match. */
export interface ReportFilters {
  level?: ReportLevel | undefined
  service?: string | undefined
  /** Reported at or after. */
  since?: Date | undefined
  /** Reported before. */
  until?: Date | undefined
}

/** How long reports are kept. */
export interface ReportRetention {
  /** Most rows kept; the newest stay (by id, the order they were stored in). */
  maxRows: number
  /** Days a report is kept, by the time it was reported. */
  maxAgeDays: number
}

/** A stream entry id as its two numbers. */
function streamKey(id: string | null): { stream_ms: string | null; stream_seq: string | null } {
  if (id === null) return { stream_ms: null, stream_seq: null }
  const [ms = '', seq = ''] = id.split('-')
  if (!/^\d{1,20}$/.test(ms) || !/^\d{1,20}$/.test(seq)) throw new Error(`not a stream entry id: ${id}`)
  return { stream_ms: ms, stream_seq: seq }
}

/**
 * Stores reports in one statement; one moved from the stream already stored (by another
 * API instance, or before a restart) is skipped. Resolves to the rows stored now.
 */
export async function insertReports(db: Db, reports: readonly NewReport[]): Promise<ServiceReportRow[]> {
  if (reports.length === 0) return []
  return db
    .insertInto('service_reports')
    .values(
      reports.map((r) => ({
        level: r.level,
        service: r.service,
        instance: r.instance,
        status: r.status,
        data: JSON.stringify(r.data),
        reported_at: r.reportedAt,
        filed_by: r.filedBy,
        ...streamKey(r.streamId),
      })),
    )
    .onConflict((oc) => oc.constraint('service_reports_stream_entry').doNothing())
    .returningAll()
    .execute()
}

/** The id of the newest stream entry stored (where moving the stream resumes); undefined when none is. */
export async function lastStoredStreamId(db: Db): Promise<string | undefined> {
  const row = await db
    .selectFrom('service_reports')
    .select(['stream_ms', 'stream_seq'])
    .where('stream_ms', 'is not', null)
    .orderBy('stream_ms', 'desc')
    .orderBy('stream_seq', 'desc')
    .limit(1)
    .executeTakeFirst()
  return row ? `${row.stream_ms}-${row.stream_seq}` : undefined
}

/** A page of reports, newest first (by the time reported, then id). */
export async function listReports(db: Db, filters: ReportFilters, page: PageRequest): Promise<Page<ServiceReportRow>> {
  const after = readCursor(page.cursor, ['reported_at', 'id'], (key) => isCursorInstant(key.reported_at) && isCursorInteger(key.id, 1n))
  let query = db.selectFrom('service_reports').selectAll()
  if (filters.level !== undefined) query = query.where('level', '=', filters.level)
  if (filters.service !== undefined) query = query.where('service', '=', filters.service)
  if (filters.since !== undefined) query = query.where('reported_at', '>=', filters.since)
  if (filters.until !== undefined) query = query.where('reported_at', '<', filters.until)
  if (after) query = query.where(sql<boolean>`(reported_at, id) < (${after.reported_at}::timestamptz, ${after.id}::bigint)`)
  const rows = await query.orderBy('reported_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()
  // Report times are whole milliseconds (they come from JS dates), so the cursor's ISO text is exact.
  return keysetPage(rows, page.limit, (row) => [row.reported_at.toISOString(), row.id])
}

/** The newest `limit` reports. */
export async function latestReports(db: Db, limit: number): Promise<ServiceReportRow[]> {
  if (limit === 0) return []
  return db.selectFrom('service_reports').selectAll().orderBy('reported_at', 'desc').orderBy('id', 'desc').limit(limit).execute()
}

/**
 * Deletes what the retention no longer keeps: reports older than `maxAgeDays` (an index
 * range on `reported_at`), and all but the newest `maxRows` (the `maxRows`-th newest id is
 * found on the primary key, and everything below it goes). Cheap enough to run after
 * every batch stored; resolves to the number of rows deleted.
 */
export async function pruneReports(db: Db, retention: ReportRetention): Promise<number> {
  const old = await sql`
    delete from service_reports where reported_at < now() - make_interval(days => ${retention.maxAgeDays})
  `.execute(db)
  const excess = await sql`
    delete from service_reports
    where id < (select id from service_reports order by id desc offset ${retention.maxRows - 1} limit 1)
  `.execute(db)
  return Number(old.numAffectedRows ?? 0n) + Number(excess.numAffectedRows ?? 0n)
}
