/**
 * The callback sender: delivers the outbox (`webhook_deliveries`) to the users' callback
 * URLs, signed (Standard Webhooks), at least once, with retries and dead letters.
 *
 * The platform's outbox sender (`src/platform/outbox/outbox-sender.ts`) does the claiming
 * under a lease, the LISTEN/NOTIFY wake-ups and polling, the batched delivered marks, the
 * retries with backoff and the dead letters; this module is one attempt: the SSRF guard
 * on the URL, the signature, the POST with its timeout, and the delay metric. Each claim
 * also reads the users' signing secrets (`webhookSecretReturning`), so a burst costs one
 * statement, not a lookup per callback.
 */
import type { BlockList } from 'node:net'
import type pg from 'pg'
import type { Registry } from 'prom-client'
import { type Dispatcher, request } from 'undici'
import type { Db } from '../../database.ts'
import { runCloseSteps } from '../../platform/lifecycle.ts'
import type { Logger } from '../../platform/logger.ts'
import { histogramOn } from '../../platform/metrics.ts'
import { createOutboxSender, type OutboxAttempt, type OutboxSenderStats } from '../../platform/outbox/outbox-sender.ts'
import { checkCallbackUrl, createCallbackAgent, parseAllowedNetworks } from './callback-url.ts'
import { webhookHeaders } from './webhook-signing.ts'
import { type ClaimedDelivery, webhookOutbox, webhookSecretReturning } from './webhook.repository.ts'

/** Dependencies of {@link createCallbackSender}. */
export interface CallbackSenderDeps {
  /** The pool for claims and results, working in `schema`. */
  db: Db
  /** Logger; the sender takes a child. */
  log: Logger
  /**
   * Where the LISTEN connection goes: a `postgres://` URL, or a factory of new,
   * unconnected clients (called again after each lost connection).
   */
  listen: string | (() => pg.Client)
  /** Schema of the tables; it names the notification channel. */
  schema: string
  /** Where `bourse_callback_delay_seconds` is recorded. @defaultValue none */
  metrics?: Registry
}

/** Options of {@link createCallbackSender}. */
export interface CallbackSenderOptions {
  /** Deliveries in flight at once. */
  concurrency: number
  /** Time allowed for one attempt (connect, request, response), in ms. */
  timeoutMs: number
  /** Backoff before the first retry, doubled per attempt (then jittered), in ms. */
  retryBaseMs: number
  /** Longest backoff between two attempts, in ms. */
  retryMaxMs: number
  /** Networks callbacks may reach although private or loopback: a BlockList, or `CALLBACK_ALLOWED_NETWORKS` text. */
  allowedNetworks: BlockList | string
  /** How long a claim holds before another sender may take the delivery, in ms; should exceed `timeoutMs`. */
  leaseMs: number
  /** Longest sleep between two looks at the table when no notification comes, in ms. @defaultValue 1000 */
  pollMs?: number
  /** Random numbers in [0, 1) for the backoff jitter (tests make it fixed). @defaultValue Math.random */
  random?: () => number
}

/** Counters of a sender, since it started (the outbox sender's: `delivered` counts 2xx answers). */
export type CallbackSenderStats = OutboxSenderStats

/** A running callback sender. */
export interface CallbackSender {
  /**
   * Delivers until `signal` aborts, then stops claiming, lets the attempts in flight finish
   * (each bounded by `timeoutMs`) and resolves. Call it once.
   */
  run(signal: AbortSignal): Promise<void>
  /** Live counters. */
  readonly stats: Readonly<CallbackSenderStats>
}

/** Creates a sender; nothing connects before {@link CallbackSender.run}. */
export function createCallbackSender(deps: CallbackSenderDeps, options: CallbackSenderOptions): CallbackSender {
  /** From the order's final state (the delivery's creation, in the same statement) to a 2xx answer. */
  const delaySeconds = histogramOn(deps.metrics, {
    name: 'bourse_callback_delay_seconds',
    help: "Time from an order's final state to its callback's 2xx answer, by whether it was the first attempt",
    labelNames: ['first_attempt'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 86_400],
  })
  const { timeoutMs, leaseMs } = options
  // The other numbers are the outbox sender's, checked there.
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`timeoutMs must be a whole number >= 1 (got ${timeoutMs})`)
  const allowed =
    typeof options.allowedNetworks === 'string' ? parseAllowedNetworks(options.allowedNetworks) : options.allowedNetworks
  const name = 'callback-sender'
  if (leaseMs <= timeoutMs) {
    deps.log
      .child({ component: name })
      .warn({ leaseMs, timeoutMs }, 'lease not longer than the attempt timeout: a slow attempt may be sent twice')
  }
  /** The HTTP agent of the running sender (made by `run`, closed after it). */
  let agent: Dispatcher | undefined

  async function attempt(delivery: ClaimedDelivery): Promise<OutboxAttempt> {
    const checked = checkCallbackUrl(delivery.url, allowed)
    if (!checked.ok) return { ok: false, status: null, error: `refused: ${checked.reason}` }
    if (delivery.webhook_secret === null) return { ok: false, status: null, error: 'the user has no webhook secret' }
    // Never the global dispatcher: the agent is what refuses private addresses a name resolves to.
    if (agent === undefined) throw new Error('the callback sender is not running')
    try {
      const headers = webhookHeaders(delivery.webhook_secret, delivery.id, delivery.payload, Date.now())
      const response = await request(delivery.url, {
        method: 'POST',
        headers: { ...headers },
        body: delivery.payload,
        dispatcher: agent,
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      // The answer's body is not used; read a little of it so the connection can be reused.
      await response.body.dump({ limit: 64 * 1024 })
      const status = response.statusCode
      if (status >= 200 && status < 300) return { ok: true, status }
      return { ok: false, status, error: `HTTP ${status}` }
    } catch (err) {
      const e = err as Error & { code?: unknown; cause?: Error }
      if (e.name === 'TimeoutError') return { ok: false, status: null, error: `timed out after ${timeoutMs} ms` }
      const cause = e.cause instanceof Error && e.cause !== e ? `: ${e.cause.message}` : ''
      return { ok: false, status: null, error: `${typeof e.code === 'string' ? e.code : e.name}: ${e.message}${cause}` }
    }
  }

  const sender = createOutboxSender<ClaimedDelivery>(
    { db: deps.db, log: deps.log, listen: deps.listen, outbox: webhookOutbox(deps.schema) },
    {
      name,
      concurrency: options.concurrency,
      leaseMs,
      retryBaseMs: options.retryBaseMs,
      retryMaxMs: options.retryMaxMs,
      ...(options.pollMs !== undefined && { pollMs: options.pollMs }),
      ...(options.random !== undefined && { random: options.random }),
      extraReturning: webhookSecretReturning,
      deliver: attempt,
      onDelivered: (delivery) => {
        delaySeconds?.observe({ first_attempt: String(delivery.attempts === 0) }, (Date.now() - delivery.created_at.getTime()) / 1000)
      },
      logContext: (delivery) => ({ orderId: delivery.order_id }),
    },
  )

  let started = false
  return {
    stats: sender.stats,
    async run(signal) {
      if (started) throw new Error('callback sender already ran')
      started = true
      agent = createCallbackAgent(allowed, { connectTimeoutMs: timeoutMs })
      try {
        await sender.run(signal)
      } finally {
        // The outbox sender has stopped claiming and let the attempts in flight finish.
        const closing = agent
        await runCloseSteps([['http agent', () => closing.close()]], deps.log.child({ component: name }), 'callback sender close step failed')
      }
    },
  }
}
