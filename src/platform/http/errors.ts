/**
 * The errors the HTTP API answers with. Code anywhere may throw an {@link AppError}; the
 * error handler turns it into `{ "error": { "code", "message", "details" } }` with its
 * status. Anything else becomes a 500 whose message and stack stay in the log.
 */
import Type, { type Static } from 'typebox'

/** Options of an {@link AppError} beyond code, status and message. */
export interface AppErrorOptions {
  /** Machine-readable specifics, sent to the client as `details` (for example the fields that are wrong). */
  details?: unknown
  /** Response headers that belong to this error (`Retry-After`, `WWW-Authenticate`). */
  headers?: Record<string, string>
  /** The underlying error, for the log only. */
  cause?: unknown
}

/** An error meant for the client: its code, status, message and details are sent as they are. */
export class AppError extends Error {
  override name = 'AppError'
  /** Stable machine-readable code (`not_found`, `validation_failed`, ...). */
  readonly code: string
  /** HTTP status of the response. */
  readonly status: number
  /** Sent as `details` when defined. */
  readonly details: unknown
  /** Extra response headers. */
  readonly headers: Readonly<Record<string, string>>

  constructor(code: string, status: number, message: string, options: AppErrorOptions = {}) {
    // No stack trace: an AppError is an answer the code chose to give, found by its code and
    // message, and thrown for every refused request (a 409 per order over the BTC cap);
    // capturing the stack took 6-8 µs each. Its `cause` keeps its own.
    const stackTraceLimit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      super(message, options.cause === undefined ? undefined : { cause: options.cause })
    } finally {
      Error.stackTraceLimit = stackTraceLimit
    }
    this.code = code
    this.status = status
    this.details = options.details
    this.headers = Object.freeze({ ...options.headers })
  }
}

/** 400: the request is wrong in a way a schema could not say. */
export class BadRequest extends AppError {
  override name = 'BadRequest'
  constructor(message: string, details?: unknown, code = 'bad_request') {
    super(code, 400, message, { details })
  }
}

/** 401: no token, or one that is unknown or revoked. Sends `WWW-Authenticate: Bearer` (RFC 6750). */
export class Unauthorized extends AppError {
  override name = 'Unauthorized'
  constructor(message = 'a valid bearer token is required', options: { invalidToken?: boolean } = {}) {
    // `error="invalid_token"` tells a client its token was refused rather than missing.
    const challenge = options.invalidToken ? 'Bearer realm="bourse", error="invalid_token"' : 'Bearer realm="bourse"'
    super('unauthorized', 401, message, { headers: { 'www-authenticate': challenge } })
  }
}

/** 403: the caller is known but may not do this. */
export class Forbidden extends AppError {
  override name = 'Forbidden'
  constructor(message = 'this token may not do that', details?: unknown) {
    super('forbidden', 403, message, { details })
  }
}

/** 404: the thing named in the request does not exist. */
export class NotFound extends AppError {
  override name = 'NotFound'
  constructor(message = 'not found', details?: unknown) {
    super('not_found', 404, message, { details })
  }
}

/** 409: the request contradicts the current state (a reused idempotency key, ...). */
export class Conflict extends AppError {
  override name = 'Conflict'
  constructor(message: string, details?: unknown, code = 'conflict') {
    super(code, 409, message, { details })
  }
}

/** 413: the body is larger than the API reads. */
export class PayloadTooLarge extends AppError {
  override name = 'PayloadTooLarge'
  constructor(limitBytes?: number) {
    super(
      'payload_too_large',
      413,
      limitBytes === undefined ? 'request body is too large' : `request body is larger than ${limitBytes} bytes`,
      { details: limitBytes === undefined ? undefined : { limitBytes } },
    )
  }
}

/** 429: the caller made too many requests; `Retry-After` says when to come back. */
export class TooManyRequests extends AppError {
  override name = 'TooManyRequests'
  constructor(retryAfterSeconds: number, message = `too many requests, retry in ${retryAfterSeconds} s`) {
    super('rate_limited', 429, message, {
      details: { retryAfterSeconds },
      headers: { 'retry-after': String(retryAfterSeconds) },
    })
  }
}

/** 503: a dependency is down; with `retryAfterSeconds`, `Retry-After` tells clients when to try again. */
export class ServiceUnavailable extends AppError {
  override name = 'ServiceUnavailable'
  constructor(message = 'service unavailable', retryAfterSeconds?: number, cause?: unknown) {
    super('service_unavailable', 503, message, {
      headers: retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) },
      cause,
    })
  }
}

/** The body of every error response, for route `response` schemas and the OpenAPI document. */
export const ErrorResponseSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable machine-readable code, e.g. `validation_failed`' }),
      message: Type.String({ description: 'Human-readable explanation' }),
      details: Type.Optional(Type.Unknown({ description: 'Specifics, e.g. the fields that are wrong' })),
    }),
  },
  { description: 'An error' },
)

/** An error response body. */
export type ErrorResponse = Static<typeof ErrorResponseSchema>

/** One wrong field of a request, in the `details` of `validation_failed`. */
export interface FieldError {
  /** Where the value is: `body.quantity`, `querystring.limit`, `body.items[2].price`. */
  field: string
  message: string
}
