/**
 * The Fastify application every HTTP service starts from: TypeBox schemas, one error
 * shape, security headers, OpenAPI at `/docs`, a Redis-backed rate limit, bearer-token
 * authentication, timeouts for slow clients and a cap on connections per address, and
 * the health routes `GET /health`, `/livez` and `/readyz`. Domains add routes as plugins;
 * `app.close()` stops it (the Redis client and the database belong to the caller).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { type AnySchema, Ajv, type ErrorObject, type Options as AjvOptions, type ValidateFunction } from 'ajv'
import ajvFormats from 'ajv-formats'
import helmet, { type HelmetOptions } from 'helmet'
import type { Registry } from 'prom-client'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyHttpOptions,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaCompiler,
  type FastifyServerOptions,
  type RouteOptions,
} from 'fastify'
import type { Config } from '../config.ts'
import { InvalidCursorError } from '../db/keyset.ts'
import type { Logger } from '../logger.ts'
import type { Redis } from '../redis.ts'
import { isUnavailable } from '../unavailable.ts'
import {
  AppError,
  ErrorResponseSchema,
  type ErrorResponse,
  type FieldError,
  TooManyRequests,
} from './errors.ts'
import { ADMIN_COOKIE, adminLoginRoutes } from './admin-session.ts'
import { type Authenticate, authPlugin, BEARER_SECURITY_SCHEME, type Principal } from './auth.ts'
import { type HealthCheck, healthRoutes } from './health.ts'
import { httpMetricsPlugin } from './metrics.ts'
import { coalescingRedisStore, rateLimitRefund } from './rate-limit-store.ts'
import { jsonBodyParser } from './json-body.ts'
import { findUnstorableText, readablePointer } from './text.ts'

/** The Fastify instance of the API, with TypeBox types for route schemas. */
export type HttpApp = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>

/** A plugin adding routes; schemas written with TypeBox type `request` and replies. */
export type RoutePlugin = FastifyPluginAsyncTypebox

/** What {@link createHttpApp} needs from the service. */
export interface HttpDeps {
  config: Pick<
    Config,
    | 'BODY_LIMIT_BYTES'
    | 'RATE_LIMIT_MAX'
    | 'RATE_LIMIT_WINDOW_MS'
    | 'METRICS_TOKEN'
    | 'AUTH_CACHE_MS'
    | 'HTTP_HEADERS_TIMEOUT_MS'
    | 'HTTP_REQUEST_TIMEOUT_MS'
    | 'HTTP_KEEP_ALIVE_TIMEOUT_MS'
    | 'HTTP_MAX_CONNECTIONS_PER_ADDRESS'
  >
  log: Logger
  /** Holds the rate-limit counters and is pinged by `/health`. Not closed by the app. */
  redis: Redis
}

/** Options for {@link createHttpApp}. */
export interface HttpAppOptions {
  /** Title of the OpenAPI document. */
  title: string
  /** Version of the API in the OpenAPI document. */
  version: string
  /** Description of the API in the OpenAPI document (Markdown). @defaultValue none */
  description?: string
  /** The API's license in the OpenAPI document (`identifier` is an SPDX expression). @defaultValue none */
  license?: { name: string; identifier?: string; url?: string }
  /**
   * Where the API is served, for the OpenAPI document. @defaultValue `/`: the origin that
   * serves the document (so Swagger UI calls the instance it was loaded from)
   */
  servers?: Array<{ url: string; description?: string }>
  /** Route plugins, registered in this order after the shared plugins. @defaultValue none */
  routes?: RoutePlugin[]
  /**
   * Resolves a bearer token to its principal (see `createTokenAuthenticator` in
   * `src/auth`). @defaultValue every token is unknown, so `requireAuth` always answers 401
   */
  authenticate?: Authenticate
  /**
   * How many requests a caller may make per `RATE_LIMIT_WINDOW_MS`, given its principal
   * (null for a caller without a valid token, counted by address). Called per request:
   * keep it cheap. @defaultValue `RATE_LIMIT_MAX` for everyone
   */
  rateLimitMax?: (principal: Principal | null) => number
  /**
   * More dependencies `/health` and `/readyz` check besides Redis (`postgres: () => ...`),
   * by name; a rejection means down. @defaultValue none
   */
  healthChecks?: Record<string, HealthCheck>
  /** Dependencies only `/readyz` checks, by name (`kafka: () => ...`); `/health` leaves them out. @defaultValue none */
  readinessChecks?: Record<string, HealthCheck>
  /**
   * Where the app records its request durations; with it, `GET /metrics` serves this
   * registry (guarded by `METRICS_TOKEN` when set). @defaultValue none: no metrics, no route
   */
  metrics?: Registry
  /** How long a health check may take, in ms. @defaultValue 2000 */
  healthTimeoutMs?: number
  /**
   * Serves `/admin/login`, where an admin signs in once for the browser pages under
   * `/admin` (which cannot send a bearer header), then goes to `landing`; those pages are
   * then authenticated by a cookie holding the token (see ./admin-session.ts).
   * @defaultValue none: no sign-in page, and no cookie is read
   */
  adminLogin?: { landing: string }
}

/** Prefix of the rate-limit counters in Redis. */
export const RATE_LIMIT_PREFIX = 'bourse:rl:'

/** Ajv's messages in the service's log, less the warning it gives for `unicode: false` (an option it calls deprecated, yet supports). */
function ajvLogger(log: Logger) {
  const text = (args: unknown[]) => args.map(String).join(' ')
  return {
    log: (...args: unknown[]) => log.info({ component: 'ajv' }, text(args)),
    warn: (...args: unknown[]) => {
      if (!String(args[0]).startsWith('DEPRECATED: option unicode')) log.warn({ component: 'ajv' }, text(args))
    },
    error: (...args: unknown[]) => log.error({ component: 'ajv' }, text(args)),
  }
}

/** Most entries in the `details` of a validation error, so a huge bad body gets a small answer. */
const MAX_FIELD_ERRORS = 20

/**
 * Validation with two Ajv instances. Fastify's default coerces types everywhere, which
 * would accept `{"quantity": "5"}` as 5; a JSON body carries its own types, so it is
 * never coerced, while querystring, params and headers are text and are coerced
 * (`?limit=5` becomes 5, `?limit=2.5` stays a failing 2.5). Unknown fields are reported,
 * not removed. All errors are collected (not only the first) so a client can fix a body
 * in one go; the body limit bounds that work.
 *
 * `minLength` and `maxLength` count UTF-16 code units (a JavaScript string's length), not
 * code points: a bound then costs nothing, where counting code points cost 0.3 µs per
 * event of The Eye's intake, 7% of its CPU (measured with bench/events.bench.ts). A string
 * within a `maxLength` in code units is within it in code points too; every `minLength`
 * of the API is 1 or guards a value checked again (a URL).
 */
function createValidatorFactory(log: Logger) {
  const logger = ajvLogger(log)
  return (externalSchemas: Record<string, AnySchema>): FastifySchemaCompiler<AnySchema> => {
    const make = (coerceTypes: AjvOptions['coerceTypes']) => {
      // allowUnionTypes: a field may take a JSON number or its text (an exact price), written `type: [...]`.
      const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, unicode: false, allowUnionTypes: true, logger })
      ajvFormats.default(ajv)
      for (const schema of Object.values(externalSchemas)) ajv.addSchema(schema)
      return ajv
    }
    const body = make(false)
    const text = make('array')
    return ({ schema, httpPart }) => {
      const ajv = httpPart === 'body' ? body : text
      // A shared schema referenced by $id is compiled once per Ajv instance.
      const id = typeof schema === 'object' && schema !== null && '$id' in schema ? schema.$id : undefined
      const validate = (typeof id === 'string' && ajv.getSchema(id)) || ajv.compile(schema)
      // JSON bodies are checked by the JSON parser, which sees their text (see createHttpApp).
      return httpPart === 'querystring' || httpPart === 'params' ? refusingUnstorableText(validate) : validate
    }
  }
}

/**
 * The first field of a coerced query string or path holding a number that is not finite.
 * Coercion turns `?limit=1e400` into Infinity, which Ajv then lets through an integer's
 * bounds (a 500 once it reached SQL).
 */
function nonFiniteField(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  for (const [key, value] of Object.entries(data)) {
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      if (typeof item === 'number' && !Number.isFinite(item)) return key.replaceAll('~', '~0').replaceAll('/', '~1')
    }
  }
  return undefined
}

/**
 * `validate` preceded by the refusal of text PostgreSQL cannot store (NUL, unpaired
 * surrogates: see ./text.ts) and followed by that of coerced numbers that are not finite,
 * each reported as a validation error of the field.
 */
function refusingUnstorableText(validate: ValidateFunction): ValidateFunction {
  const checked = function (this: unknown, data: unknown, context?: Parameters<ValidateFunction>[1]) {
    const found = findUnstorableText(data)
    if (found !== undefined) {
      checked.errors = [{ keyword: 'text', instancePath: found.pointer, schemaPath: '#', params: {}, message: found.message }]
      return false
    }
    const valid = validate.call(this, data, context)
    checked.errors = validate.errors
    const infinite = valid ? nonFiniteField(data) : undefined
    if (infinite !== undefined) {
      checked.errors = [{ keyword: 'type', instancePath: `/${infinite}`, schemaPath: '#', params: {}, message: 'must be a finite number' }]
      return false
    }
    return valid
  } as ValidateFunction
  // Fastify passes the parent to a validator with a schemaEnv, so coercion can replace a root value.
  checked.schemaEnv = validate.schemaEnv
  checked.schema = validate.schema
  return checked
}

/** One {@link FieldError} per Ajv error, naming the field (also a missing or an unknown one). */
export function fieldErrors(errors: readonly ErrorObject[], part: string): FieldError[] {
  const seen = new Set<string>()
  const out: FieldError[] = []
  for (const error of errors) {
    let field = part + readablePointer(error.instancePath)
    let message = error.message ?? 'is invalid'
    if (error.keyword === 'additionalProperties') {
      field += `.${String(error.params.additionalProperty)}`
      message = 'is not allowed'
    } else if (error.keyword === 'required') {
      field += `.${String(error.params.missingProperty)}`
      message = 'is required'
    }
    const key = `${field}\n${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ field, message })
    if (out.length === MAX_FIELD_ERRORS) break
  }
  return out
}

/** The status and `code` of the framework's own client errors. */
const fastifyClientErrors: Record<string, { status: number; code: string; message?: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed_json', message: 'the body is not valid JSON' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'malformed_json', message: 'the body is empty but its type is JSON' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type', message: 'send the body as application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'bad_request' },
}

/** Codes of other 4xx statuses the framework or a plugin may answer. */
const statusCodes: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  409: 'conflict',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large',
}

interface ErrorAnswer {
  status: number
  body: ErrorResponse
  headers: Record<string, string>
}

function errorBody(code: string, message: string, details?: unknown): ErrorResponse {
  return { error: details === undefined ? { code, message } : { code, message, details } }
}

/** `Retry-After` of a 503 for a dependency that is down: about when a reconnection is tried. */
const DEPENDENCY_RETRY_AFTER_SECONDS = 2

/** The answer for any thrown value; only {@link AppError}s and client errors say what went wrong. */
function describeError(err: unknown, bodyLimit: number): ErrorAnswer {
  if (err instanceof AppError) {
    return { status: err.status, body: errorBody(err.code, err.message, err.details), headers: { ...err.headers } }
  }
  if (err instanceof InvalidCursorError) {
    // Every paged route takes its cursor in the query string (see ./paging.ts).
    return { status: 400, body: errorBody(err.code, err.message, { field: 'querystring.cursor' }), headers: {} }
  }
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    code?: unknown
    statusCode?: unknown
    message?: unknown
    validation?: ErrorObject[]
    validationContext?: string
  }
  if (Array.isArray(e.validation)) {
    const details = fieldErrors(e.validation, e.validationContext ?? 'request')
    const names = details.map((d) => d.field).join(', ')
    return { status: 400, body: errorBody('validation_failed', `invalid request: ${names}`, details), headers: {} }
  }
  const known = typeof e.code === 'string' ? fastifyClientErrors[e.code] : undefined
  if (known) {
    const message =
      known.code === 'payload_too_large' ? `the body is larger than ${bodyLimit} bytes` : (known.message ?? String(e.message))
    const details = known.code === 'payload_too_large' ? { limitBytes: bodyLimit } : undefined
    return { status: known.status, body: errorBody(known.code, message, details), headers: {} }
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500
  if (status >= 500 && isUnavailable(err)) {
    return {
      status: 503,
      body: errorBody('service_unavailable', 'a service this request needs is unavailable; try again later'),
      headers: { 'retry-after': String(DEPENDENCY_RETRY_AFTER_SECONDS) },
    }
  }
  if (status >= 400 && status < 500) {
    // A client error raised by the framework or a plugin describes the request, not our
    // internals; a JSON syntax error from the parser lands here too.
    const code = err instanceof SyntaxError ? 'malformed_json' : (statusCodes[status] ?? 'bad_request')
    return { status, body: errorBody(code, typeof e.message === 'string' ? e.message : code), headers: {} }
  }
  return { status: 500, body: errorBody('internal', 'internal error; it has been logged'), headers: {} }
}

/** Security headers of JSON answers (OWASP REST Security Cheat Sheet). */
export const API_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
})

/** Whether a URL is an HTML page or its assets (documentation, admin), not the JSON API. */
function isPage(url: string): boolean {
  return url.startsWith('/docs') || url.startsWith('/admin') || url.startsWith('/dashboard')
}

/** The headers helmet sets for `options`, computed once by running its middleware on a recorder. */
function staticSecurityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  const recorder = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value)
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()]
    },
  }
  let failed: unknown
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    failed = err
  })
  if (failed) throw failed
  return headers
}

/** `getApiOrdersById` for `GET /api/orders/:id`: the operationId of a route that names none. */
function defaultOperationId(method: string, url: string): string {
  const words = url
    .split('/')
    .filter(Boolean)
    .map((part) => (part.startsWith(':') ? `by-${part.slice(1)}` : part))
    .flatMap((part) => part.split(/[^A-Za-z0-9]+/))
    .filter(Boolean)
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('')
}

/**
 * What the OpenAPI document says of every route, unless the route says it itself: an
 * operationId, that it needs no credentials (routes with `requireAuth` were given the
 * bearer scheme before this runs), and that it may answer a client error in the one error
 * shape (any route can: a malformed URL is a 400).
 */
function documentRoute(route: RouteOptions): void {
  const schema = route.schema ?? {}
  if (schema.hide === true) return
  const response = (schema.response ?? {}) as Record<string, unknown>
  const hasClientError = Object.keys(response).some((status) => /^4(\d\d|xx)$/i.test(status))
  const method = Array.isArray(route.method) ? String(route.method[0]) : String(route.method)
  route.schema = {
    ...schema,
    operationId: schema.operationId ?? defaultOperationId(method, route.url),
    security: schema.security ?? [],
    ...(!hasClientError && { response: { ...response, '4xx': ErrorResponseSchema } }),
  }
}

/** Paths neither rate-limited nor counted: probes and the documentation. */
function isExempt(request: FastifyRequest): boolean {
  const url = request.routeOptions.url
  return (
    url === '/health' || url === '/livez' || url === '/readyz' || url === '/metrics' || url === '/docs' || (url?.startsWith('/docs/') ?? false)
  )
}

/**
 * The caller a request counts against: its token when the token is valid (so clients
 * behind one address do not share a limit), otherwise its address. Made-up tokens count
 * against the address, or rotating them would escape the limit. The token is hashed so
 * Redis keys never hold one.
 */
function rateLimitKey(request: FastifyRequest): string {
  // The token's id, not the token: Redis keys never hold a secret, and no second hash.
  if (request.principal) return `token:${request.principal.tokenId}`
  return `ip:${normalizeIP(request.ip)}`
}

/** Shortest interval between two checks of an open response's token, when `AUTH_CACHE_MS` is shorter (0 included). */
const MIN_RECHECK_MS = 1000

/**
 * Closes every connection from an address that already has `max` open, before it is
 * read: one client cannot take all the sockets (or the file descriptors) of the process.
 * Counted by the socket's address, so behind a proxy every client shares one count.
 */
function capConnectionsPerAddress(server: Server, max: number, log: Logger): void {
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress
    if (address === undefined) return
    const count = open.get(address) ?? 0
    if (count >= max) {
      log.debug({ address, max }, 'connection refused: too many open from this address')
      socket.destroy()
      return
    }
    open.set(address, count + 1)
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1
      if (left > 0) open.set(address, left)
      else open.delete(address)
    })
  })
}

/**
 * Builds the API's Fastify instance with the shared plugins, the health route and the
 * given routes. Call `listen()` or `inject()` on it; `close()` stops it.
 */
export async function createHttpApp(deps: HttpDeps, options: HttpAppOptions): Promise<HttpApp> {
  const { config, log, redis } = deps
  const { rateLimitMax } = options
  // Node checks the head and request timeouts on a timer; a few checks per timeout keep
  // the actual limit close to the configured one.
  const headersTimeout = Math.min(config.HTTP_HEADERS_TIMEOUT_MS, config.HTTP_REQUEST_TIMEOUT_MS)
  const serverOptions: FastifyServerOptions & Pick<FastifyHttpOptions<Server>, 'http'> = {
    loggerInstance: log,
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Fastify sets no request timeout by default: a body announced and never sent would
    // hold its connection for ever. The request timeout ends once the request is
    // received, so a long answer (an event stream) is not cut by it.
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    http: {
      headersTimeout,
      requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    },
    // Path parameters such as session ids may be long; the router's default is 100 characters.
    routerOptions: { maxParamLength: 1024 },
    // Errors raised before routing (a malformed URL) get the same answer shape as the rest.
    frameworkErrors: (err, request, reply) => {
      const answer = describeError(err, config.BODY_LIMIT_BYTES)
      request.log.debug({ err, status: answer.status }, 'request refused before routing')
      void (reply as FastifyReply).code(answer.status).headers(answer.headers).send(answer.body)
    },
    schemaController: {
      // Fastify's types describe its own Ajv pool; ours has the same call shape at runtime.
      compilersFactory: { buildValidator: createValidatorFactory(log) as never },
    },
  }
  const app = Fastify(serverOptions).withTypeProvider<TypeBoxTypeProvider>()
  if (config.HTTP_MAX_CONNECTIONS_PER_ADDRESS > 0) capConnectionsPerAddress(app.server, config.HTTP_MAX_CONNECTIONS_PER_ADDRESS, log)

  // The API speaks JSON only: a text/plain body is refused with 415 instead of reaching
  // a schema as a string.
  app.removeContentTypeParser('text/plain')
  // Fastify's JSON parser, then the refusal of text PostgreSQL cannot store (./json-body.ts).
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(app))

  app.setErrorHandler((err, request, reply) => {
    const answer = describeError(err, config.BODY_LIMIT_BYTES)
    if (answer.status >= 500) request.log.error({ err }, 'request failed')
    else request.log.debug({ err, status: answer.status }, 'request refused')
    return reply.code(answer.status).headers(answer.headers).send(answer.body)
  })

  // Headers against sniffing, framing and XSS, computed once: @fastify/helmet builds its
  // middleware again for every request, which cost a quarter of BuyStock's CPU (measured
  // with bench/api.bench.ts). Swagger UI loads only its own scripts and styles, so
  // helmet's default policy fits it; upgrade-insecure-requests is dropped because the API
  // is also served over plain HTTP (locally, behind a TLS proxy), where it would make
  // browsers fetch the UI's assets over HTTPS and fail.
  const pageHeaders = staticSecurityHeaders({ contentSecurityPolicy: { directives: { 'upgrade-insecure-requests': null } } })
  app.addHook('onRequest', (request, reply, done) => {
    // Pages (Swagger UI, the admin pages, the dashboard) get helmet's whole set; JSON answers the short set
    // OWASP recommends for REST APIs, which is a third of the bytes on every response.
    reply.headers(isPage(request.url) ? pageHeaders : API_SECURITY_HEADERS)
    done()
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: options.title,
        version: options.version,
        ...(options.description !== undefined && { description: options.description }),
        ...(options.license && { license: options.license }),
      },
      servers: options.servers ?? [{ url: '/', description: 'The server this document is served from' }],
      components: {
        securitySchemes: {
          [BEARER_SECURITY_SCHEME]: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API token, `bourse_...` (create one with `bourse tokens create USER`)',
          },
        },
      },
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  await app.register(rateLimit, {
    // Applied below as one instance-wide hook rather than per route: instance hooks run
    // before route hooks, so a request is counted before `requireAuth` can refuse it.
    global: false,
    // The service decides each caller's budget; the platform only counts.
    max: rateLimitMax === undefined ? config.RATE_LIMIT_MAX : (request) => rateLimitMax(request.principal),
    timeWindow: config.RATE_LIMIT_WINDOW_MS,
    // Counted in Redis: all the hits of one event-loop turn by one call.
    store: coalescingRedisStore(redis, RATE_LIMIT_PREFIX),
    keyGenerator: rateLimitKey,
    allowList: isExempt,
    // Redis being down should not turn every request into an error; /health reports it.
    skipOnError: true,
    errorResponseBuilder: (_request, context) => new TooManyRequests(Math.max(1, Math.ceil(context.ttl / 1000))),
  })
  const countRequest = app.rateLimit()
  const countAddress = app.createRateLimit()
  const giveBack = rateLimitRefund(redis, RATE_LIMIT_PREFIX)
  // Requests already counted against their address before their token's lookup.
  const countedBeforeLookup = new WeakSet<FastifyRequest>()

  await app.register(authPlugin, {
    authenticate: options.authenticate ?? (async () => undefined),
    // A token that must be looked up is first counted against its address (it has no
    // principal yet): made-up tokens then cost at most the address's budget of queries,
    // and none once it answers 429. A token that proves valid gives the hit back and is
    // counted against its own budget instead. Remembered tokens (real or rejected) skip this.
    beforeLookup: async (request, reply) => {
      const limit = await countAddress(request)
      if (limit.isAllowed) return undefined
      if (limit.isExceeded) {
        const retryAfter = Math.max(1, limit.ttlInSeconds)
        reply.headers({ 'x-ratelimit-limit': limit.max, 'x-ratelimit-remaining': 0, 'x-ratelimit-reset': retryAfter })
        throw new TooManyRequests(retryAfter)
      }
      countedBeforeLookup.add(request)
      reply.headers({ 'x-ratelimit-limit': limit.max, 'x-ratelimit-remaining': limit.remaining, 'x-ratelimit-reset': limit.ttlInSeconds })
      return () => {
        countedBeforeLookup.delete(request)
        giveBack(limit.key).catch((err: unknown) => request.log.warn({ err }, 'rate-limit hit not given back'))
      }
    },
    // Probes and documentation never read the caller, and are not rate-limited: looking
    // their tokens up would be a query per request outside any budget.
    skip: isExempt,
    // An event stream outlives the token cache: its token is checked again as often, so a
    // revoked token's stream ends within AUTH_CACHE_MS.
    recheckMs: Math.max(config.AUTH_CACHE_MS, MIN_RECHECK_MS),
    ...(options.adminLogin && { pageCookie: ADMIN_COOKIE }),
  })
  // After the auth plugin's onRoute hook, which documents the routes needing a token.
  app.addHook('onRoute', documentRoute)
  // After the auth hook: the key depends on whether the token is valid.
  app.addHook('onRequest', async (request, reply) => {
    if (!countedBeforeLookup.has(request)) await countRequest.call(app, request, reply)
  })

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    return reply.code(404).send(errorBody('not_found', `no route ${request.method} ${path.slice(0, 200)}`))
  })

  if (options.metrics) await app.register(httpMetricsPlugin, { registry: options.metrics, token: config.METRICS_TOKEN })

  await app.register(
    healthRoutes({
      checks: { redis: () => redis.ping(), ...options.healthChecks },
      readinessChecks: options.readinessChecks ?? {},
      timeoutMs: options.healthTimeoutMs ?? 2000,
    }),
  )

  if (options.adminLogin) {
    await app.register(
      adminLoginRoutes({ authenticate: options.authenticate ?? (async () => undefined), landing: options.adminLogin.landing }),
    )
  }
  for (const routes of options.routes ?? []) await app.register(routes)
  return app
}

