/**
 * Service reports: short records of what happened to a process (started, stopped, lost a
 * dependency, has it back), filed by the platform's service shape for every long-running
 * service and read by operators from one place (`GET /api/reports`).
 *
 * A service appends its reports to a capped Redis stream ({@link REPORTS_STREAM}, trimmed
 * with `XADD MAXLEN ~`) on the connection it already holds for its heartbeat; the API
 * moves them into PostgreSQL (see `src/operations`). So filing a report needs no
 * connection a service would not have anyway, and a service without PostgreSQL (the price
 * updater) reports a lost PostgreSQL of the API's as well as its own lost Redis: a report
 * that cannot be appended now (Redis down) is kept in memory, a bounded number of them, and
 * appended once Redis is back, in order, with the time it was made.
 *
 * {@link createDependencyReports} turns what the shape observes of its dependencies into
 * one report per transition (lost, then recovered), never one per error.
 */
import { hostname } from 'node:os'
import type { Logger } from './logger.ts'
import type { Redis } from './redis.ts'

/** The Redis stream holding reports on their way to PostgreSQL. */
export const REPORTS_STREAM = 'bourse:reports'

/** How serious a report is. */
export const REPORT_LEVELS = ['info', 'warning', 'error'] as const

/** How serious a report is. */
export type ReportLevel = (typeof REPORT_LEVELS)[number]

/** One report, as appended to the stream. */
export interface ServiceReport {
  level: ReportLevel
  /** The service's name (`price-updater`). */
  service: string
  /** The instance (`--instance-id`, or host and pid). */
  instance: string
  /** What happened, a short code: `started`, `stopped`, `dependency_lost`, `dependency_recovered`. */
  status: string
  /** Specifics: the dependency, its error, the stop's reason. */
  data: Record<string, unknown>
  /** When it happened, ISO 8601. */
  at: string
}

/** Options of {@link createReporter}. */
export interface ReporterOptions {
  /** The connection the reports are appended on (the service's heartbeat connection). */
  redis: Redis
  log: Logger
  service: string
  instance: string
  /** About how many entries the stream keeps (`XADD MAXLEN ~`). @defaultValue 10000 */
  streamMaxLen?: number
  /** Most reports kept in memory while Redis cannot take them; the oldest go first. @defaultValue 100 */
  bufferSize?: number
  /** The clock. @defaultValue () => new Date() */
  now?: () => Date
}

/** Files a process's reports. */
export interface Reporter {
  /** Files a report: appended now if Redis takes it, else kept and appended once it is back. */
  report(level: ReportLevel, status: string, data?: Record<string, unknown>): void
  /**
   * Appends what is kept, if Redis takes it, waiting for a connection still being made;
   * resolves when done (never rejects).
   */
  flush(): Promise<void>
  /** Reports not yet appended. */
  readonly pending: number
}

/** Appends one report to the stream, trimming it to about `maxLen` entries. */
export async function appendReport(redis: Redis, report: ServiceReport, maxLen = 10_000): Promise<string | null> {
  return redis.xadd(REPORTS_STREAM, 'MAXLEN', '~', String(maxLen), '*', 'report', JSON.stringify(report))
}

/** Creates the reporter of one process. */
export function createReporter(options: ReporterOptions): Reporter {
  const { redis, log, service, instance } = options
  const maxLen = options.streamMaxLen ?? 10_000
  const bufferSize = options.bufferSize ?? 100
  const now = options.now ?? (() => new Date())
  const kept: ServiceReport[] = []
  let dropped = 0
  let flushing: Promise<void> | undefined

  const drain = async () => {
    // In order, one at a time: a report appended before an earlier one would read as its past.
    while (kept.length > 0) {
      // Not ready (reconnecting, or closed): a command would wait for the reconnection.
      if (redis.status !== 'ready') return
      const next = kept[0]!
      try {
        await appendReport(redis, next, maxLen)
      } catch (err) {
        log.warn({ err, pending: kept.length }, 'report not appended yet; kept until Redis is back')
        return
      }
      kept.shift()
    }
    if (dropped > 0) {
      log.warn({ dropped }, 'reports dropped while Redis was unreachable')
      dropped = 0
    }
  }
  const flush = (): Promise<void> => {
    flushing ??= drain().finally(() => {
      flushing = undefined
    })
    return flushing
  }
  const onReady = () => void flush()
  redis.on('ready', onReady)

  return {
    report(level, status, data = {}) {
      kept.push({ level, service, instance, status, data, at: now().toISOString() })
      if (kept.length > bufferSize) {
        kept.shift()
        dropped++
      }
      // A flush in progress takes the new report too (it loops until nothing is kept).
      if (!flushing) void flush()
    },
    async flush() {
      // A connection still being made (a process stopping right after it started) is waited
      // for; one lost is not (the caller bounds the wait anyway).
      if (kept.length > 0 && ['wait', 'connecting', 'connect'].includes(redis.status)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            redis.off('ready', done)
            redis.off('end', done)
            resolve()
          }
          redis.once('ready', done)
          redis.once('end', done)
        })
      }
      await flushing
      await flush()
    },
    get pending() {
      return kept.length
    },
  }
}

/** The standard data of a report about the process itself. */
export function processData(version: string): Record<string, unknown> {
  return { pid: process.pid, host: hostname(), version }
}

/** A dependency the service shape watches. */
export type Dependency = 'redis' | 'postgres' | 'kafka'

/** Files a report when a dependency is lost or recovered, once per transition. */
export interface DependencyReports {
  /** The dependency failed (`err`: what it said); reported only if it was up. */
  lost(dependency: Dependency, err?: unknown): void
  /** The dependency works; reported only if it was lost. */
  recovered(dependency: Dependency): void
  /** Whether the dependency is known to be lost. */
  isLost(dependency: Dependency): boolean
}

/** A short text of an error, for a report's data. */
function errorText(err: unknown): string | undefined {
  if (err === undefined) return undefined
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    const text = err.message || err.name
    return typeof code === 'string' && !text.includes(code) ? `${code}: ${text}` : text
  }
  return String(err)
}

/**
 * Tracks each dependency's state and files `dependency_lost` (error) and
 * `dependency_recovered` (info, with how long it was lost) on the transitions only: a
 * connection failing a hundred times while the dependency is down is one report.
 */
export function createDependencyReports(reporter: Reporter, log: Logger, now: () => number = Date.now): DependencyReports {
  const lostAt = new Map<Dependency, number>()
  return {
    lost(dependency, err) {
      if (lostAt.has(dependency)) return
      lostAt.set(dependency, now())
      const error = errorText(err)
      log.warn({ dependency, err }, 'dependency lost')
      reporter.report('error', 'dependency_lost', { dependency, ...(error !== undefined && { error }) })
    },
    recovered(dependency) {
      const since = lostAt.get(dependency)
      if (since === undefined) return
      lostAt.delete(dependency)
      const downMs = now() - since
      log.info({ dependency, downMs }, 'dependency recovered')
      reporter.report('info', 'dependency_recovered', { dependency, down_ms: downMs })
    },
    isLost: (dependency) => lostAt.has(dependency),
  }
}
