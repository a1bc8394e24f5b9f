/**
 * Health routes: `GET /health` (the short answer load balancers have used so far),
 * `GET /livez` (the process answers; no dependency is asked) and `GET /readyz` (every
 * dependency answers, each with its latency). `/livez` and `/readyz` speak
 * `application/health+json`, the shape of the IETF draft "Health Check Response Format
 * for HTTP APIs" (draft-inadarei-api-health-check): `status` is `pass` or `fail`, and
 * `checks` has one `<dependency>:responseTime` entry per dependency.
 */
import { performance } from 'node:perf_hooks'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { ErrorResponseSchema, ServiceUnavailable } from './errors.ts'

/** A dependency check: resolves when the dependency answers; a rejection means it is down. */
export type HealthCheck = () => Promise<unknown>

/** Options of {@link healthRoutes}. */
export interface HealthOptions {
  /** The dependencies `/health` and `/readyz` check, by name (`redis`, `postgres`). */
  checks: Readonly<Record<string, HealthCheck>>
  /** Dependencies only `/readyz` checks (`/health` predates them and stays as it was). @defaultValue none */
  readinessChecks?: Readonly<Record<string, HealthCheck>>
  /** How long a check may take, in ms; a slower one counts as down. */
  timeoutMs: number
}

/** The media type of `/livez` and `/readyz`. */
export const HEALTH_MEDIA_TYPE = 'application/health+json'

const HealthStatus = Type.Union([Type.Literal('pass'), Type.Literal('fail')])

/** One dependency's result in a {@link HealthResponse}. */
export const HealthCheckResult = Type.Object({
  status: HealthStatus,
  observedValue: Type.Number({ description: 'How long the check took' }),
  observedUnit: Type.Literal('ms'),
  time: Type.String({ format: 'date-time', description: 'When the check ran' }),
  output: Type.Optional(Type.String({ description: 'Why it failed (the details are in the log)' })),
})

/** The body of `/livez` and `/readyz`. */
export const HealthResponse = Type.Object(
  {
    status: HealthStatus,
    checks: Type.Optional(
      Type.Record(Type.String(), Type.Array(HealthCheckResult), { description: 'One `<dependency>:responseTime` entry per dependency' }),
    ),
  },
  {
    examples: [
      {
        status: 'pass',
        checks: {
          'redis:responseTime': [{ status: 'pass', observedValue: 0.4, observedUnit: 'ms', time: '2026-01-02T09:00:00.000Z' }],
        },
      },
    ],
  },
)
export type HealthResponse = Static<typeof HealthResponse>

const health = (schema: typeof HealthResponse, description: string) => ({ description, content: { [HEALTH_MEDIA_TYPE]: { schema } } })

/** How long one round of readiness checks answers `/readyz` (ms). */
const READINESS_REUSE_MS = 1000

/** Runs a check against a timeout: how long it took, and why it failed (no `error` when it passed). */
async function runCheck(check: HealthCheck, timeoutMs: number): Promise<{ ms: number; error?: unknown; timedOut?: boolean }> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs)
  })
  try {
    // The slow check's late result is ignored.
    const outcome = await Promise.race([check().then(() => 'ok' as const), timeout])
    const ms = Math.round((performance.now() - started) * 100) / 100
    return outcome === 'timeout' ? { ms, timedOut: true, error: new Error(`no answer within ${timeoutMs} ms`) } : { ms }
  } catch (error) {
    return { ms: Math.round((performance.now() - started) * 100) / 100, error }
  } finally {
    clearTimeout(timer)
  }
}

/** The health routes, as a plugin. */
export function healthRoutes(options: HealthOptions): FastifyPluginAsyncTypebox {
  const healthNames = Object.keys(options.checks)
  const readyChecks = { ...options.checks, ...options.readinessChecks }
  const readyNames = Object.keys(readyChecks)
  const runAll = (checks: Record<string, HealthCheck>, names: string[]) =>
    Promise.all(names.map((name) => runCheck(checks[name] as HealthCheck, options.timeoutMs)))

  return async (app) => {
    app.get(
      '/health',
      {
        schema: {
          operationId: 'getHealth',
          summary: 'Whether the service and its dependencies answer',
          tags: ['system'],
          security: [],
          response: { 200: Type.Object({ status: Type.Literal('ok') }), 503: ErrorResponseSchema },
        },
      },
      async (request) => {
        const results = await runAll(options.checks, healthNames)
        const down = healthNames.filter((_, i) => results[i]?.error !== undefined)
        if (down.length > 0) {
          const reasons = results.flatMap((r) => (r.error === undefined ? [] : [String(r.error)]))
          request.log.warn({ down, reasons }, 'health check failed')
          throw new ServiceUnavailable(`unavailable: ${down.join(', ')}`, 5)
        }
        return { status: 'ok' as const }
      },
    )

    app.get(
      '/livez',
      {
        schema: {
          operationId: 'getLiveness',
          summary: 'Liveness: the process answers (no dependency is asked)',
          tags: ['system'],
          security: [],
          response: { 200: health(HealthResponse, 'The process is alive') },
        },
      },
      async (_request, reply) => reply.type(HEALTH_MEDIA_TYPE).send({ status: 'pass' as const }),
    )

    let recent: { at: number; results: ReturnType<typeof runAll> } | undefined
    app.get(
      '/readyz',
      {
        schema: {
          operationId: 'getReadiness',
          summary: 'Readiness: every dependency answers, with its latency; 503 when one does not',
          tags: ['system'],
          security: [],
          response: {
            200: health(HealthResponse, 'Every dependency answers'),
            503: health(HealthResponse, 'A dependency is down: its check has status `fail`'),
          },
        },
      },
      async (request, reply) => {
        const time = new Date().toISOString()
        // The route needs no token and is not rate-limited: requests within a second share
        // one round of checks, so it cannot be used to load PostgreSQL and Kafka.
        if (!recent || Date.now() - recent.at >= READINESS_REUSE_MS) recent = { at: Date.now(), results: runAll(readyChecks, readyNames) }
        const results = await recent.results
        const checks: NonNullable<HealthResponse['checks']> = {}
        let status: 'pass' | 'fail' = 'pass'
        readyNames.forEach((name, i) => {
          const result = results[i] as Awaited<ReturnType<typeof runCheck>>
          const failed = result.error !== undefined
          if (failed) {
            status = 'fail'
            request.log.warn({ err: result.error, dependency: name }, 'readiness check failed')
          }
          checks[`${name}:responseTime`] = [
            {
              status: failed ? 'fail' : 'pass',
              observedValue: result.ms,
              observedUnit: 'ms',
              time,
              // The reason itself (addresses, messages of the driver) stays in the log.
              ...(failed && { output: result.timedOut ? `no answer within ${options.timeoutMs} ms` : 'the check failed' }),
            },
          ]
        })
        return reply
          .code(status === 'pass' ? 200 : 503)
          .type(HEALTH_MEDIA_TYPE)
          .send({ status, checks })
      },
    )
  }
}
