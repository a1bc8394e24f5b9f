/**
 * The operations API: services and operators file reports (`POST /api/reports`), admins
 * read them (`GET /api/reports`) and the state of every service (`GET /api/status`: the
 * live instances from their heartbeats, the expected services that are missing, each
 * consumer group's lag, the newest reports).
 *
 * Who may file: an admin token, or the `REPORTS_TOKEN` (a shared bearer token for a
 * service or script outside Bourse, which then needs no API token in PostgreSQL). Bourse's
 * own services do not call this route: the service shape appends their reports to a Redis
 * stream, which the API moves here (./reports.drain.ts). Reading needs an admin token.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Db } from '../database.ts'
import { mapPage } from '../platform/db/keyset.ts'
import { consumerLagByGroup, readServiceStatus } from '../platform/heartbeat.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import { assertAdmin, BEARER_SECURITY_SCHEME, bearerToken, principalOf, requireAuth } from '../platform/http/auth.ts'
import { BadRequest, ErrorResponseSchema } from '../platform/http/errors.ts'
import { queryInstant } from '../platform/http/instant.ts'
import { pageRequest, PageSchema } from '../platform/http/paging.ts'
import type { Redis } from '../platform/redis.ts'
import type { ServiceReportRow } from './db/tables.ts'
import { insertReports, latestReports, listReports, pruneReports, type ReportRetention } from './reports.repository.ts'
import { CreateReportBody, MAX_DATA_BYTES, ReportsQuery, ReportView, StatusQuery, StatusView } from './reports.schemas.ts'

/** What {@link operationsRoutes} needs. */
export interface OperationsRoutesDeps {
  db: Db
  /** Where the heartbeats are. */
  redis: Redis
  retention: ReportRetention
  /** `REPORTS_TOKEN`: a bearer token that may file reports; undefined: only admin tokens may. */
  reportsToken?: string | undefined
  /** The long-running services `GET /api/status` expects a live instance of. */
  expected: readonly string[]
  /** The clock. @defaultValue () => new Date() */
  now?: () => Date
}

/** `filed_by` of a report filed with `REPORTS_TOKEN`. */
export const REPORTS_TOKEN_FILER = 'reports-token'

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

/** A report row as the API shows it. */
function reportView(row: ServiceReportRow): ReportView {
  return {
    id: row.id,
    level: row.level,
    service: row.service,
    instance: row.instance,
    status: row.status,
    data: row.data,
    reported_at: row.reported_at.toISOString(),
    received_at: row.received_at.toISOString(),
    filed_by: row.filed_by,
  }
}

/** Whether two secrets are equal, in time that does not tell how much of them matched. */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(a), digest(b))
}

/** The routes, as a plugin to register under the API. */
export function operationsRoutes(deps: OperationsRoutesDeps): RoutePlugin {
  const { db, redis, retention, reportsToken, expected } = deps
  const now = deps.now ?? (() => new Date())

  /** Who files: `REPORTS_TOKEN`'s holder, or an admin token (401 without a valid token, 403 for another). */
  const requireFiler = async (request: FastifyRequest): Promise<void> => {
    const token = bearerToken(request)
    if (reportsToken !== undefined && token !== undefined && sameSecret(token, reportsToken)) return
    await requireAuth(request)
    assertAdmin(principalOf(request))
  }
  // requireAuth listed first, as itself: the auth plugin documents the routes it guards as needing a bearer token.
  const adminOnly = [requireAuth, async (request: FastifyRequest) => assertAdmin(principalOf(request))]

  return async (app) => {
    app.post(
      '/api/reports',
      {
        onRequest: requireFiler,
        schema: {
          operationId: 'createReport',
          tags: ['operations'],
          summary: 'File a report about a service',
          description:
            'For services and operators: a level, the service it is about, a short status and a JSON object of ' +
            `specifics (at most ${MAX_DATA_BYTES} bytes). Needs an admin token or \`REPORTS_TOKEN\`. Bourse's own ` +
            'services report their starts, stops and lost or recovered dependencies by themselves. Reports are kept ' +
            'within `REPORTS_MAX_ROWS` and `REPORTS_RETENTION_DAYS`.',
          security: [{ [BEARER_SECURITY_SCHEME]: [] }],
          body: CreateReportBody,
          response: { 201: ReportView, ...errors(400, 401, 403, 413, 429, 503) },
        },
      },
      async (request, reply) => {
        const { level, service, status, instance } = request.body
        const data = request.body.data ?? {}
        const bytes = Buffer.byteLength(JSON.stringify(data))
        if (bytes > MAX_DATA_BYTES) {
          throw new BadRequest(
            'invalid request: body.data',
            [{ field: 'body.data', message: `is ${bytes} bytes of JSON, more than ${MAX_DATA_BYTES}` }],
            'validation_failed',
          )
        }
        const filedBy = request.principal?.tokenId ?? REPORTS_TOKEN_FILER
        const [row] = await insertReports(db, [
          { level, service, instance: instance ?? null, status, data, reportedAt: now(), filedBy, streamId: null },
        ])
        await pruneReports(db, retention)
        reply.code(201)
        return reportView(row!)
      },
    )

    app.get(
      '/api/reports',
      {
        onRequest: adminOnly,
        schema: {
          operationId: 'listReports',
          tags: ['operations'],
          summary: 'Reports, newest first, a keyset page at a time',
          description:
            'Filters combine (all must match): `level`, `service`, and `since` (inclusive) and `until` (exclusive) bounding ' +
            'the time reported. Needs an admin token.',
          querystring: ReportsQuery,
          response: { 200: PageSchema(ReportView), ...errors(400, 401, 403, 429, 503) },
        },
      },
      async (request) => {
        const { level, service } = request.query
        const since = queryInstant(request.query.since, 'querystring.since')
        const until = queryInstant(request.query.until, 'querystring.until')
        if (since !== undefined && until !== undefined && until < since) {
          throw new BadRequest('invalid request: querystring.until', [{ field: 'querystring.until', message: 'is before since' }], 'validation_failed')
        }
        const page = await listReports(db, { level, service, since, until }, pageRequest(request.query))
        return mapPage(page, reportView)
      },
    )

    app.get(
      '/api/status',
      {
        onRequest: adminOnly,
        schema: {
          operationId: 'getStatus',
          tags: ['operations'],
          summary: 'Every service: live instances, missing services, consumer lag, newest reports',
          description:
            'What `bourse status` shows, and more: every live instance from its heartbeat (gone within three ' +
            '`HEARTBEAT_INTERVAL_MS` after it dies) with its own status, the expected long-running services without ' +
            'a live instance, each consumer group\'s lag summed from its instances\' heartbeats, and the newest reports. ' +
            'Needs an admin token.',
          querystring: StatusQuery,
          response: { 200: StatusView, ...errors(400, 401, 403, 429, 503) },
        },
      },
      async (request) => {
        const [{ instances, missing }, reports] = await Promise.all([
          readServiceStatus(redis, expected),
          latestReports(db, request.query.reports ?? 20),
        ])
        return { instances, missing, consumer_lag: consumerLagByGroup(instances), reports: reports.map(reportView) }
      },
    )
  }
}
