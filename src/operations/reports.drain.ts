/**
 * Moves the reports services append to the Redis stream (see `src/platform/reports.ts`)
 * into PostgreSQL, in the API process: every interval it reads the entries after the last
 * one stored, stores them in one statement and applies the retention.
 *
 * Where to resume is the newest stream entry stored in PostgreSQL (read once, then kept),
 * so a restart neither loses nor repeats entries, and two API instances moving the same
 * entries store each once (the entry id is unique). The stream is capped (`XADD MAXLEN ~`):
 * while no API runs for long, the oldest entries beyond the cap are lost, not the stream's
 * memory.
 */
import type { Db } from '../database.ts'
import type { Logger } from '../platform/logger.ts'
import type { Redis } from '../platform/redis.ts'
import { REPORT_LEVELS, type ReportLevel, REPORTS_STREAM } from '../platform/reports.ts'
import { isStorableInstant } from '../platform/http/instant.ts'
import { findUnstorableText } from '../platform/http/text.ts'
import { insertReports, lastStoredStreamId, type NewReport, pruneReports, type ReportRetention } from './reports.repository.ts'
import { MAX_DATA_BYTES, MAX_INSTANCE_LENGTH, MAX_SERVICE_LENGTH, MAX_STATUS_LENGTH, SERVICE_PATTERN } from './reports.schemas.ts'

/** What {@link startReportsDrain} needs. */
export interface ReportsDrainOptions {
  db: Db
  /** Where the stream is (the API's connection). */
  redis: Redis
  log: Logger
  retention: ReportRetention
  /** Time between two moves, in ms; 0 never moves by itself (tests call `runOnce`). @defaultValue 1000 */
  intervalMs?: number
  /** Most entries read and stored per statement. @defaultValue 500 */
  batchSize?: number
}

/** The running drain. */
export interface ReportsDrain {
  /** Moves every entry there is now; resolves to how many reports were stored. A run in progress is joined. */
  runOnce(): Promise<number>
  /** Stops moving (waits for a move in progress); idempotent. */
  close(): Promise<void>
}

const servicePattern = new RegExp(SERVICE_PATTERN)

/** A stream entry's report, or why it cannot be stored. */
export function parseStreamEntry(id: string, fields: readonly string[]): NewReport | { invalid: string } {
  const at = fields.indexOf('report')
  const text = at >= 0 && at % 2 === 0 ? fields[at + 1] : undefined
  if (text === undefined) return { invalid: 'no report field' }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { invalid: 'not JSON' }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { invalid: 'not an object' }
  const r = value as Record<string, unknown>
  if (!REPORT_LEVELS.includes(r.level as ReportLevel)) return { invalid: 'level' }
  if (typeof r.service !== 'string' || r.service.length > MAX_SERVICE_LENGTH || !servicePattern.test(r.service)) return { invalid: 'service' }
  if (typeof r.status !== 'string' || r.status.length === 0 || r.status.length > MAX_STATUS_LENGTH) return { invalid: 'status' }
  const instance = typeof r.instance === 'string' && r.instance.length > 0 ? r.instance.slice(0, MAX_INSTANCE_LENGTH) : null
  let data = typeof r.data === 'object' && r.data !== null && !Array.isArray(r.data) ? (r.data as Record<string, unknown>) : {}
  const bytes = Buffer.byteLength(JSON.stringify(data))
  if (bytes > MAX_DATA_BYTES) data = { truncated: true, bytes }
  // The time the service gave, else the entry's (when Redis took it).
  const reportedAt = typeof r.at === 'string' && !Number.isNaN(Date.parse(r.at)) ? new Date(r.at) : new Date(Number(id.split('-')[0]))
  if (!isStorableInstant(reportedAt)) return { invalid: 'at' }
  const report: NewReport = { level: r.level as ReportLevel, service: r.service, instance, status: r.status, data, reportedAt, filedBy: null, streamId: id }
  const unstorable = findUnstorableText({ service: report.service, instance, status: report.status, data })
  return unstorable ? { invalid: `${unstorable.pointer} ${unstorable.message}` } : report
}

/** Starts moving the stream into PostgreSQL every `intervalMs`. */
export function startReportsDrain(options: ReportsDrainOptions): ReportsDrain {
  const { db, redis, log, retention } = options
  const intervalMs = options.intervalMs ?? 1000
  const batchSize = options.batchSize ?? 500
  /** The last entry moved; undefined until read from PostgreSQL. */
  let position: string | undefined
  let running: Promise<number> | undefined
  let failing = false
  let closed = false

  const move = async (): Promise<number> => {
    position ??= (await lastStoredStreamId(db)) ?? '0-0'
    let stored = 0
    for (;;) {
      const entries: Array<[id: string, fields: string[]]> = await redis.xrange(REPORTS_STREAM, `(${position}`, '+', 'COUNT', batchSize)
      if (entries.length === 0) break
      const reports: NewReport[] = []
      for (const [id, fields] of entries) {
        const report = parseStreamEntry(id, fields)
        if ('invalid' in report) log.warn({ id, reason: report.invalid }, 'report entry skipped: not a valid report')
        else reports.push(report)
      }
      stored += (await insertReports(db, reports)).length
      position = entries.at(-1)![0]
      if (entries.length < batchSize || closed) break
    }
    if (stored > 0) await pruneReports(db, retention)
    return stored
  }

  const runOnce = (): Promise<number> =>
    (running ??= move()
      .then(
        (stored) => {
          if (failing) log.info('moving reports works again')
          failing = false
          return stored
        },
        (err: unknown) => {
          // Once per outage: Redis or PostgreSQL down fails every run until it is back.
          if (!failing) log.warn({ err }, 'moving reports to PostgreSQL failed; retrying')
          failing = true
          throw err
        },
      )
      .finally(() => {
        running = undefined
      }))

  const timer = intervalMs > 0 ? setInterval(() => void runOnce().catch(() => {}), intervalMs) : undefined
  timer?.unref()
  let closing: Promise<void> | undefined
  return {
    runOnce,
    close: () =>
      (closing ??= (async () => {
        closed = true
        clearInterval(timer)
        await running?.catch(() => {})
      })()),
  }
}
