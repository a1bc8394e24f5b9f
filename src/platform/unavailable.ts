/**
 * Whether an error means a dependency (Redis, PostgreSQL) is down, hung or unreachable,
 * as opposed to a bug or a refused statement. The API answers such errors with 503 and
 * `Retry-After` (the request may succeed later, unchanged) instead of 500.
 */

/** Socket errors of a connection that could not be made or was lost. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])

/**
 * SQLSTATEs of a server that cannot serve now: connection exceptions (class 08), too many
 * connections, and a server shutting down or starting up.
 */
function isUnavailableSqlState(code: string): boolean {
  return code.startsWith('08') || code === '53300' || code === '57P01' || code === '57P02' || code === '57P03'
}

/** Messages ioredis and pg use for a lost, missing or hung connection (they set no code). */
const UNAVAILABLE_MESSAGES = [
  'Command timed out', // ioredis commandTimeout
  'Connection is closed.', // ioredis, connection lost with the command in flight
  "Stream isn't writeable", // ioredis, offline without a queue
  'Connection terminated', // pg, connection lost or connect timeout
  'timeout exceeded when trying to connect', // pg-pool connect timeout
  'Query read timeout', // pg query_timeout
]

/** Whether `err` (or an error it wraps) says a dependency cannot be reached now. */
export function isUnavailable(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 5) return false
  const e = err as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown; errors?: unknown }
  if (e.name === 'MaxRetriesPerRequestError') return true
  if (typeof e.code === 'string' && (NETWORK_CODES.has(e.code) || (/^[0-9A-Z]{5}$/.test(e.code) && isUnavailableSqlState(e.code)))) {
    return true
  }
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.some((m) => (e.message as string).startsWith(m))) return true
  // Node reports a failed connection to every address of a host as an AggregateError.
  if (Array.isArray(e.errors) && e.errors.some((inner) => isUnavailable(inner, depth + 1))) return true
  return isUnavailable(e.cause, depth + 1)
}
