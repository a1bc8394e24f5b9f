/**
 * Prometheus metrics of an HTTP service: the duration of every request by method, route
 * pattern and status, recorded in a registry the service passes in (never prom-client's
 * global one), and `GET /metrics` serving that registry as Prometheus text. The route is
 * open unless a token is configured; then it needs `Authorization: Bearer <token>`.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { Histogram, type Registry } from 'prom-client'
import Type from 'typebox'
import { BEARER_SECURITY_SCHEME, bearerToken } from './auth.ts'
import { ErrorResponseSchema, Unauthorized } from './errors.ts'

/** Options of {@link httpMetricsPlugin}. */
export interface HttpMetricsOptions {
  /** Where the metrics are recorded and what `/metrics` serves. */
  registry: Registry
  /** The bearer token `/metrics` requires (`METRICS_TOKEN`). @defaultValue none: open */
  token?: string | undefined
}

/** Name of the request duration histogram. */
export const HTTP_DURATION_METRIC = 'bourse_http_request_duration_seconds'

/** The `route` label of requests no route matched (404s), so scanned URLs add no series. */
const UNMATCHED_ROUTE = 'unmatched'

/** The Prometheus text format's media type. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8'

const sha256 = (text: string) => createHash('sha256').update(text).digest()

type Child = Histogram.Internal<'method' | 'route' | 'status_code'>

const metrics: FastifyPluginAsync<HttpMetricsOptions> = async (app, options) => {
  const { registry, token } = options
  const duration = new Histogram({
    name: HTTP_DURATION_METRIC,
    help: 'Time from the request arriving to the response being sent, by method, route pattern and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })

  // The hot path: one observe per request. The labelled child of each (route, method,
  // status) is made once and kept, so a request allocates no label object or key string.
  const children = new Map<string, Map<string, Map<number, Child>>>()
  const childOf = (route: string, method: string, status: number): Child => {
    let byMethod = children.get(route)
    if (!byMethod) children.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (!byStatus) byMethod.set(method, (byStatus = new Map()))
    let child = byStatus.get(status)
    if (!child) byStatus.set(status, (child = duration.labels(method, route, String(status))))
    return child
  }
  app.addHook('onResponse', (request, reply, done) => {
    childOf(request.routeOptions.url ?? UNMATCHED_ROUTE, request.method, reply.statusCode).observe(reply.elapsedTime / 1000)
    done()
  })

  const tokenHash = token === undefined ? undefined : sha256(token)
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        summary: 'Prometheus metrics of this instance (text format)',
        description: 'Open unless `METRICS_TOKEN` is set; then `Authorization: Bearer <METRICS_TOKEN>` is required.',
        tags: ['system'],
        security: tokenHash === undefined ? [] : [{ [BEARER_SECURITY_SCHEME]: [] }],
        produces: [PROMETHEUS_TEXT],
        response: {
          200: { description: 'Prometheus text format', content: { [PROMETHEUS_TEXT]: { schema: Type.String() } } },
          401: ErrorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      if (tokenHash !== undefined) {
        const given = bearerToken(request)
        // Digests have one length, so the comparison takes the same time whatever was sent.
        if (given === undefined) throw new Unauthorized('a bearer token is required for the metrics')
        if (!timingSafeEqual(sha256(given), tokenHash)) {
          throw new Unauthorized('the bearer token is not the metrics token', { invalidToken: true })
        }
      }
      return reply.type(PROMETHEUS_TEXT).send(await registry.metrics())
    },
  )
}

/**
 * Records every request's duration in `bourse_http_request_duration_seconds{method,route,status_code}`
 * (route is the route's pattern, `/api/orders/:id`, never the raw URL) and serves `GET /metrics`.
 */
export const httpMetricsPlugin = fp(metrics, { name: 'bourse-http-metrics', fastify: '5.x' })
