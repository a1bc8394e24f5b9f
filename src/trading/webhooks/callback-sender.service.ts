/**
 * The callback sender: delivers the outbox (`webhook_deliveries`) to the users' callback
 * URLs, signed (Standard Webhooks), at least once, with retries and dead letters.
 *
 * Latency: the transaction that writes a delivery also runs `pg_notify`, and the sender
 * LISTENs on a dedicated connection, so it claims a new delivery as soon as it commits.
 * Polling (every `pollMs`, and at the earliest due retry or lease end once a look found
 * nothing) covers the times the LISTEN connection is down and retries, which nobody
 * notifies.
 *
 * At least once: a delivery is claimed under a lease (`lease_until`) before it is sent and
 * its result is recorded after; a sender killed in between leaves the lease to run out,
 * then a sender sends it again with the same `webhook-id`, which receivers deduplicate.
 *
 * Cost per burst, not per callback: one claim takes every due delivery there is room for,
 * and the successes are recorded together, one statement at a time for all the attempts
 * that ended meanwhile (an attempt counts as in flight until its result is recorded).
 */
import type { BlockList } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Registry } from 'prom-client'
import { type Dispatcher, request } from 'undici'
import type { Db } from '../../database.ts'
import { notifyChannel } from '../../platform/db/index.ts'
import { runCloseSteps } from '../../platform/lifecycle.ts'
import type { Logger } from '../../platform/logger.ts'
import { histogramOn } from '../../platform/metrics.ts'
import { backoffDelay } from '../../platform/retry.ts'
import { checkCallbackUrl, createCallbackAgent, parseAllowedNetworks } from './callback-url.ts'
import { webhookHeaders } from './webhook-signing.ts'
import {
  type ClaimedDelivery,
  claimDueDeliveries,
  markAllDelivered,
  markFailed,
  nextDueAt,
  releaseClaims,
} from './webhook.repository.ts'

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

/** Counters of a sender, since it started. */
export interface CallbackSenderStats {
  /** Deliveries claimed. */
  claimed: number
  /** Deliveries answered with 2xx. */
  delivered: number
  /** Attempts that failed and were scheduled again. */
  retried: number
  /** Deliveries that became dead letters. */
  deadLettered: number
  /** Attempts running now. */
  inFlight: number
  /** True while the LISTEN connection is up. */
  listening: boolean
}

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

/**
 * The delay before a delivery's next attempt after `attempt` failures so far (0 for the
 * first retry): the platform's exponential backoff with full jitter, uniform in
 * [0, min(max, base * 2^attempt)]. The schedule is the delivery's (attempts are counted in
 * its row), so a delivery taken over by another sender keeps its place in it.
 */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return backoffDelay(attempt, baseMs, maxMs, random)
}

/** Ceiling of the first wait after a failed claim or a lost LISTEN connection, in ms. */
const RECONNECT_BASE_MS = 50
/** Highest ceiling of a wait before reconnecting LISTEN, in ms. */
const RECONNECT_MAX_MS = 5000

/** How long a successful attempt waits for others to be recorded with it, in ms (a lost mark is only a resend). */
const RECORD_WINDOW_MS = 5

/** Shortest sleep, so that a clock difference between us and PostgreSQL cannot make the loop spin. */
const minSleepMs = 5

/** The outcome of one attempt. */
type Attempt = { ok: true; status: number } | { ok: false; status: number | null; error: string }

function positive(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number >= 1 (got ${value})`)
}

/** Creates a sender; nothing connects before {@link CallbackSender.run}. */
export function createCallbackSender(deps: CallbackSenderDeps, options: CallbackSenderOptions): CallbackSender {
  const { db, schema } = deps
  /** From the order's final state (the delivery's creation, in the same statement) to a 2xx answer. */
  const delaySeconds = histogramOn(deps.metrics, {
    name: 'bourse_callback_delay_seconds',
    help: "Time from an order's final state to its callback's 2xx answer, by whether it was the first attempt",
    labelNames: ['first_attempt'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600, 86_400],
  })
  const { concurrency, timeoutMs, retryBaseMs, retryMaxMs, leaseMs } = options
  const pollMs = options.pollMs ?? 1000
  const random = options.random ?? Math.random
  for (const [name, value] of Object.entries({ concurrency, timeoutMs, retryBaseMs, retryMaxMs, leaseMs, pollMs })) {
    positive(name, value)
  }
  const allowed =
    typeof options.allowedNetworks === 'string' ? parseAllowedNetworks(options.allowedNetworks) : options.allowedNetworks
  const log = deps.log.child({ component: 'callback-sender' })
  if (leaseMs <= timeoutMs) {
    log.warn({ leaseMs, timeoutMs }, 'lease not longer than the attempt timeout: a slow attempt may be sent twice')
  }
  const channel = notifyChannel('webhooks', schema)
  const stats: CallbackSenderStats = { claimed: 0, delivered: 0, retried: 0, deadLettered: 0, inFlight: 0, listening: false }
  const inFlight = new Set<Promise<void>>()
  let started = false

  // The loop sleeps on `wakeUp`; `woken` remembers a wake that came while it was busy, so
  // a notification arriving during a claim is never lost.
  let woken = false
  /** True when the last claim filled every free slot, so more deliveries may be due. */
  let backlog = false
  let wakeUp: (() => void) | undefined
  /**
   * The earliest moment a pending delivery is known to become due: from the last read of
   * the due index, and the retries this sender scheduled since.
   */
  let knownDueAt = Number.POSITIVE_INFINITY
  const wake = () => {
    woken = true
    wakeUp?.()
  }
  const nap = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (woken || signal.aborted) {
        resolve()
        return
      }
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        wakeUp = undefined
        resolve()
      }
      const timer = setTimeout(done, ms)
      wakeUp = done
      signal.addEventListener('abort', done, { once: true })
    })

  async function attempt(delivery: ClaimedDelivery, agent: Dispatcher): Promise<Attempt> {
    const checked = checkCallbackUrl(delivery.url, allowed)
    if (!checked.ok) return { ok: false, status: null, error: `refused: ${checked.reason}` }
    if (delivery.webhook_secret === null) return { ok: false, status: null, error: 'the user has no webhook secret' }
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

  /** Successes waiting to be recorded by {@link recordDeliveries}. */
  let successes: Array<{ id: string; status: number; done: PromiseWithResolvers<void> }> = []
  let recording: Promise<void> | undefined

  /** Records the waiting successes, one statement per round, until none is left. */
  async function recordDeliveries(): Promise<void> {
    // The attempts that end in the next few milliseconds join the first round: under load
    // one statement records dozens of them, instead of one statement per turn.
    await new Promise<void>((resolve) => setTimeout(resolve, RECORD_WINDOW_MS))
    while (successes.length > 0) {
      const round = successes
      successes = []
      try {
        await markAllDelivered(db, round)
        for (const success of round) success.done.resolve()
      } catch (err) {
        for (const success of round) success.done.reject(err)
      }
    }
    recording = undefined
  }

  /** Records a successful attempt with the others ending about now. */
  function recordDelivered(id: string, status: number): Promise<void> {
    const done = Promise.withResolvers<void>()
    successes.push({ id, status, done })
    recording ??= recordDeliveries()
    return done.promise
  }

  async function deliver(delivery: ClaimedDelivery, agent: Dispatcher): Promise<void> {
    const result = await attempt(delivery, agent)
    const context = { deliveryId: delivery.id, orderId: delivery.order_id, attempt: delivery.attempts + 1 }
    if (result.ok) {
      await recordDelivered(delivery.id, result.status)
      stats.delivered++
      delaySeconds?.observe({ first_attempt: String(delivery.attempts === 0) }, (Date.now() - delivery.created_at.getTime()) / 1000)
      log.debug({ ...context, status: result.status }, 'callback delivered')
      return
    }
    const delay = retryDelayMs(delivery.attempts, retryBaseMs, retryMaxMs, random)
    const nextAttemptAt = new Date(Date.now() + delay)
    const status = await markFailed(db, delivery.id, { error: result.error, status: result.status, nextAttemptAt })
    if (status === 'dead') {
      stats.deadLettered++
      log.warn({ ...context, error: result.error }, 'callback failed past its retry period: dead letter')
    } else if (status === 'pending') {
      stats.retried++
      log.info({ ...context, error: result.error, retryInMs: delay }, 'callback failed, will retry')
      // The retry may be due before the loop's planned wake-up.
      knownDueAt = Math.min(knownDueAt, nextAttemptAt.getTime())
      wake()
    }
  }

  function start(delivery: ClaimedDelivery, agent: Dispatcher): void {
    const task = deliver(delivery, agent)
      .catch((err: unknown) => {
        // Recording the result failed: the lease runs out and the delivery is sent again.
        log.error({ err, deliveryId: delivery.id }, 'recording a callback attempt failed')
      })
      .finally(() => {
        inFlight.delete(task)
        stats.inFlight = inFlight.size
        // A slot is free: when the last claim was full, more may be due.
        if (backlog) wake()
      })
    inFlight.add(task)
    stats.inFlight = inFlight.size
  }

  function createListenClient(): pg.Client {
    if (typeof deps.listen !== 'string') return deps.listen()
    return new pg.Client({
      connectionString: deps.listen,
      options: `-c search_path=${schema}`,
      application_name: 'bourse-callback-sender',
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
    })
  }

  /** Keeps one LISTEN connection up until `signal` aborts, reconnecting with backoff. */
  async function listen(signal: AbortSignal): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      const client = createListenClient()
      // Ending the client also stops a connection attempt that hangs.
      const endClient = () => void client.end().catch(() => {})
      signal.addEventListener('abort', endClient, { once: true })
      const lost = new Promise<unknown>((resolve) => {
        client.on('error', resolve)
        client.on('end', () => resolve(new Error('connection ended')))
      })
      client.on('notification', (message) => {
        if (message.channel === channel) wake()
      })
      try {
        await client.connect()
        await client.query(`LISTEN ${client.escapeIdentifier(channel)}`)
        stats.listening = true
        if (failures > 0) log.info('LISTEN connection back')
        failures = 0
        // Deliveries committed while nobody listened have no notification coming.
        wake()
        const stopped = new Promise<void>((resolve) => {
          if (signal.aborted) resolve()
          else signal.addEventListener('abort', () => resolve(), { once: true })
        })
        const err = await Promise.race([lost, stopped])
        if (!signal.aborted) log.error({ err }, 'LISTEN connection lost, reconnecting')
      } catch (err) {
        if (!signal.aborted) log.error({ err }, 'LISTEN connection failed, retrying')
      } finally {
        stats.listening = false
      }
      signal.removeEventListener('abort', endClient)
      await client.end().catch(() => {})
      if (signal.aborted) break
      failures++
      // Polling delivers meanwhile, only slower.
      await sleep(Math.max(minSleepMs, backoffDelay(failures, RECONNECT_BASE_MS, RECONNECT_MAX_MS, random)), undefined, { signal }).catch(() => {})
    }
  }

  async function claimLoop(signal: AbortSignal, agent: Dispatcher): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      woken = false
      let sleepMs = pollMs
      try {
        const free = concurrency - inFlight.size
        if (free > 0) {
          const claimed = await claimDueDeliveries(db, { limit: free, leaseMs })
          if (signal.aborted) {
            // Stopping: hand back what was claimed but not started, for another sender.
            await releaseClaims(
              db,
              claimed.map((d) => d.id),
            )
            break
          }
          stats.claimed += claimed.length
          backlog = claimed.length === free
          for (const delivery of claimed) start(delivery, agent)
          if (claimed.length === 0 && !woken) {
            // Nothing due: look when the next retry or lease end comes. (When a
            // notification came during the claim, claim again at once instead.) After a
            // claim that found work this read is skipped, one statement less per burst: in
            // a burst every commit notifies, and what was known to come stays known.
            const due = await nextDueAt(db)
            knownDueAt = due?.getTime() ?? Number.POSITIVE_INFINITY
          }
          // Sleep until then, a notification or a failed attempt, whichever comes first.
          // When the claim filled every free slot, maybe more is due: the end of an attempt
          // wakes us to claim again.
          sleepMs = Math.min(pollMs, Math.max(minSleepMs, knownDueAt - Date.now()))
        } else {
          backlog = true
        }
        failures = 0
      } catch (err) {
        failures++
        log.error({ err, failures }, 'claiming callbacks failed')
        sleepMs = Math.max(minSleepMs, backoffDelay(failures, RECONNECT_BASE_MS, pollMs, random))
      }
      await nap(sleepMs, signal)
    }
  }

  return {
    stats,
    async run(signal) {
      if (started) throw new Error('callback sender already ran')
      started = true
      const agent = createCallbackAgent(allowed, { connectTimeoutMs: timeoutMs })
      const listening = listen(signal)
      try {
        await claimLoop(signal, agent)
      } finally {
        // Stop claiming first (done), then let the attempts in flight record their results.
        await runCloseSteps(
          [
            ['attempts in flight', () => Promise.all([...inFlight])],
            ['listen connection', () => listening],
            ['http agent', () => agent.close()],
          ],
          log,
          'callback sender close step failed',
        )
      }
    },
  }
}
