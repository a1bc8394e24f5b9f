/**
 * The client of the external verification API (the seed's `verify_user`), which answers
 * after 1 to 100 s. Thousands of verifications wait at once, each on its own keep-alive
 * connection of a dedicated undici pool: no pipelining, because a request queued behind
 * a 100 s answer would wait for it.
 *
 * Every verification has a deadline (epoch ms): the request is aborted then and the
 * answer is 'timeout' (stalled). Connection errors and 5xx answers are retried with
 * backoff until the deadline; a 4xx or a `result` other than 0 is 'failed'.
 */
import { Pool } from 'undici'
import type { Logger } from '../platform/logger.ts'
import { retry, RetryAbortedError } from '../platform/retry.ts'

/** How a verification ended: the API said yes, said no, or did not answer in time. */
export type VerificationResult = 'verified' | 'failed' | 'timeout'

/** What is verified. */
export interface VerificationRequest {
  orderId: string
  user: string
}

/** Options for {@link createVerificationClient}. */
export interface VerificationClientOptions {
  /** The verification endpoint, `POST`ed `{ "user", "order_id" }`. */
  url: string
  /** Connections kept to the API: at least the verifications in flight at once. @defaultValue 5000 */
  maxConnections?: number
  /** Ceiling of the first delay before retrying a connection error or 5xx; doubles per attempt, with full jitter. @defaultValue 100 */
  retryBaseMs?: number
  /** Longest delay between two attempts. @defaultValue 2000 */
  retryMaxMs?: number
  /** Time allowed to open a connection. @defaultValue 10000 */
  connectTimeoutMs?: number
  /**
   * How long an idle connection is kept for the next verification; below Node's default
   * server keep-alive (5 s), so a connection the server is closing is not reused.
   * @defaultValue 4000
   */
  keepAliveTimeoutMs?: number
  log?: Logger
}

/** Per-call options of {@link VerificationClient.verify}. */
export interface VerifyOptions {
  /**
   * Abandons the verification (a shutdown): the call rejects with the signal's reason
   * instead of answering, so the caller does not take it for a timeout.
   */
  signal?: AbortSignal
}

/** The verification API client. */
export interface VerificationClient {
  /** Verifies `request`, giving up at `deadlineMs` (epoch ms) with 'timeout'. */
  verify(request: VerificationRequest, deadlineMs: number, options?: VerifyOptions): Promise<VerificationResult>
  /** Aborts the requests in flight and closes the connections. Later calls return the same promise. */
  close(): Promise<void>
}

/** Thrown by {@link VerificationClient.verify} after {@link VerificationClient.close}. */
export class VerificationClientClosedError extends Error {
  override name = 'VerificationClientClosedError'
}

/** An answer worth asking again: the API was down, overloaded or said something we cannot read. */
class RetryableAnswer extends Error {
  override name = 'RetryableAnswer'
}

/** Statuses that say "not now" rather than "no". */
const RETRY_STATUSES = new Set([408, 425, 429])
const MAX_RESPONSE_BYTES = 64 * 1024

/** Creates the client; close it with {@link VerificationClient.close}. */
export function createVerificationClient(options: VerificationClientOptions): VerificationClient {
  const url = new URL(options.url)
  const path = `${url.pathname}${url.search}`
  const retryBaseMs = options.retryBaseMs ?? 100
  const retryMaxMs = options.retryMaxMs ?? 2000
  const log = options.log?.child({ component: 'verification-client' })
  const pool = new Pool(url.origin, {
    connections: options.maxConnections ?? 5000,
    pipelining: 1,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 4000,
    connect: { timeout: options.connectTimeoutMs ?? 10_000 },
    maxResponseSize: MAX_RESPONSE_BYTES,
  })
  let closing: Promise<void> | undefined

  /** One request; the answer, or a RetryableAnswer / transport error to retry. */
  const attempt = async (request: VerificationRequest, remainingMs: number, signal: AbortSignal) => {
    const { statusCode, body } = await pool.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ user: request.user, order_id: request.orderId }),
      signal,
      // The pool's defaults (300 s) could cut nothing shorter than the deadline, but a
      // longer deadline must not be cut either: the signal ends the request, these only
      // back it up.
      headersTimeout: remainingMs + 1000,
      bodyTimeout: remainingMs + 1000,
    })
    if (statusCode >= 500 || RETRY_STATUSES.has(statusCode)) {
      await body.dump()
      throw new RetryableAnswer(`verification API answered ${statusCode}`)
    }
    if (statusCode < 200 || statusCode >= 300) {
      await body.dump()
      return 'failed' as const
    }
    const text = await body.text()
    let answer: unknown
    try {
      answer = JSON.parse(text)
    } catch {
      throw new RetryableAnswer('verification API answered 2xx without JSON')
    }
    const result = (answer as { result?: unknown } | null)?.result
    if (typeof result !== 'number') throw new RetryableAnswer('verification API answered 2xx without a numeric result')
    return result === 0 ? ('verified' as const) : ('failed' as const)
  }

  return {
    async verify(request, deadlineMs, verifyOptions = {}) {
      const external = verifyOptions.signal
      /** One attempt: the answer, 'timeout' at the deadline, or an error to retry. */
      const once = async (): Promise<VerificationResult> => {
        if (closing) throw new VerificationClientClosedError('verification client is closed')
        external?.throwIfAborted()
        const remaining = deadlineMs - Date.now()
        if (remaining <= 0) return 'timeout'
        // One controller per attempt, aborted at the deadline or by the caller's signal; a
        // listener removed afterwards, so the long-lived caller signal keeps no reference.
        const controller = new AbortController()
        let timedOut = false
        const timer = setTimeout(() => {
          timedOut = true
          controller.abort(new Error('verification deadline reached'))
        }, remaining)
        const onAbort = () => controller.abort(external?.reason)
        external?.addEventListener('abort', onAbort, { once: true })
        try {
          return await attempt(request, remaining, controller.signal)
        } catch (err) {
          external?.throwIfAborted()
          if (closing) throw new VerificationClientClosedError('verification client is closed')
          if (timedOut || Date.now() >= deadlineMs) return 'timeout'
          throw err
        } finally {
          clearTimeout(timer)
          external?.removeEventListener('abort', onAbort)
        }
      }
      try {
        // Retried until the deadline: no wait ends after it, and the attempt at it answers 'timeout'.
        return await retry(once, {
          what: 'verification attempt',
          ...(external && { signal: external }),
          ...(log && { log }),
          context: { orderId: request.orderId },
          baseMs: retryBaseMs,
          maxMs: retryMaxMs,
          deadlineMs,
          isPermanent: (err) => err instanceof VerificationClientClosedError || external?.aborted === true,
        })
      } catch (err) {
        // Abandoned by the caller: reject with its reason, not ours.
        if (err instanceof RetryAbortedError) external?.throwIfAborted()
        throw err
      }
    },
    close() {
      closing ??= pool.destroy()
      return closing
    },
  }
}
