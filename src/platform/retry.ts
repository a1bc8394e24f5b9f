/**
 * Retrying with backoff, written once: exponential backoff with full jitter, abortable
 * sleeps, throttled logging, and one classification of failures as permanent (retrying
 * cannot help: dead-letter or give up) or transient (retry).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from './logger.ts'

/** A failure that retrying cannot fix (bad input): the work is given up or dead-lettered. */
export class PermanentError extends Error {
  override name = 'PermanentError'
}

/**
 * A failure that retrying in this process cannot fix, such as a store that lost what the
 * service wrote to it: {@link retry} never retries it, and a service whose start or work
 * fails with it stops with exit code {@link fatalExitCode}, printing the message, which
 * says what happened and what to run.
 */
export class FatalError extends Error {
  override name = 'FatalError'
}

/** Exit code of a service stopped by a {@link FatalError} (sysexits' EX_DATAERR). */
export const fatalExitCode = 65

/** Thrown by {@link retry} when its signal aborted before the work succeeded; `cause` is the last failure, if any. */
export class RetryAbortedError extends Error {
  override name = 'RetryAbortedError'
  /** What was being retried. */
  readonly what: string
  constructor(what: string, options?: { cause?: unknown }) {
    super(`${what}: aborted while retrying`, options)
    this.what = what
  }
}

/**
 * PostgreSQL refused the data itself (SQLSTATE class 22, data exception, or 23, integrity
 * constraint violation): the same statement fails the same way every time.
 */
export function isRefusedByDatabase(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}

/** True for a failure retrying cannot fix: a {@link PermanentError} or data PostgreSQL refuses. */
export function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError || isRefusedByDatabase(err)
}

/**
 * The delay before retry number `attempt + 1` (`attempt` failures so far, 0 for the first
 * retry): exponential backoff with full jitter, uniform in [0, min(max, base * 2^attempt)],
 * rounded to the millisecond.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  // 2^attempt overflows to Infinity after ~1000 attempts; min() keeps the cap.
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** attempt))
}

/** Options of {@link retry}. */
export interface RetryOptions {
  /** What is retried, for logs and the abort error ("storing events"). */
  what: string
  /** Ends the retries: after a failure, an aborted signal rejects with {@link RetryAbortedError}. */
  signal?: AbortSignal
  /** Logs failures: the first and every tenth as warnings, the others at debug. @defaultValue no logging */
  log?: Logger
  /** Fields added to each log line (an order id, a partition). */
  context?: Record<string, unknown>
  /** Ceiling of the first delay, doubled per failure. @defaultValue 100 */
  baseMs?: number
  /** Highest ceiling of a delay. @defaultValue 5000 */
  maxMs?: number
  /** Failures that are not retried but rethrown at once. @defaultValue none: everything is retried */
  isPermanent?: (err: unknown) => boolean
  /** Most attempts; the last failure is rethrown after them. @defaultValue Infinity */
  maxAttempts?: number
  /** The least delay a failure itself asks for (an HTTP Retry-After), in ms. @defaultValue none */
  minDelayMs?: (err: unknown) => number | undefined
  /** No delay ends later than this time (epoch ms): the next attempt runs at it at the latest. @defaultValue none */
  deadlineMs?: number
  /** The clock of `deadlineMs`. @defaultValue Date.now */
  now?: () => number
  /** Called before each delay (counters, metrics). */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void
  /** Random numbers in [0, 1) for the jitter. @defaultValue Math.random */
  random?: () => number
}

/**
 * Runs `fn` until it resolves, waiting {@link backoffDelay} between attempts. `fn` runs at
 * least once, even with an aborted signal (work in hand is attempted); after a failure,
 * an aborted signal ends the retries with {@link RetryAbortedError}, as does an abort
 * during a delay. A {@link FatalError}, permanent failures and the last of `maxAttempts`
 * are rethrown as they are.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { what, signal, log } = options
  const baseMs = options.baseMs ?? 100
  const maxMs = options.maxMs ?? 5000
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY
  const now = options.now ?? Date.now
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt)
    } catch (err) {
      if (err instanceof FatalError || options.isPermanent?.(err) || attempt >= maxAttempts) throw err
      if (signal?.aborted) throw new RetryAbortedError(what, { cause: err })
      let delay = Math.max(options.minDelayMs?.(err) ?? 0, backoffDelay(attempt - 1, baseMs, maxMs, options.random))
      if (options.deadlineMs !== undefined) delay = Math.max(0, Math.min(delay, options.deadlineMs - now()))
      // An outage fails thousands of calls at once: a warning on the first failure and
      // every tenth keeps the log readable, the rest are at debug.
      if (log) log[attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug']({ err, ...options.context, attempt }, `${what} failed, retrying`)
      options.onRetry?.(err, attempt, delay)
      if (delay > 0) {
        try {
          await sleep(delay, undefined, signal ? { signal } : undefined)
        } catch {
          throw new RetryAbortedError(what, { cause: err })
        }
      }
    }
  }
}
