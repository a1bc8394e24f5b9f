/**
 * The outbox sender: delivers the rows of one outbox table (`outbox.repository.ts`) with a
 * domain's `deliver` function, at least once, with retries and dead letters. The domain
 * says how to deliver one row (an HTTP callback, an email); this module owns when.
 *
 * Latency: the transaction that writes a row also runs `pg_notify`, and the sender LISTENs
 * on a dedicated connection, so it claims a new row as soon as it commits. Polling (every
 * `pollMs`, and at the earliest due retry or lease end once a look found nothing) covers
 * the times the LISTEN connection is down and retries, which nobody notifies.
 *
 * At least once: a row is claimed under a lease (`lease_until`) before it is delivered and
 * its result is recorded after; a sender killed in between leaves the lease to run out,
 * then a sender delivers it again with the same `id`, which receivers deduplicate.
 *
 * Cost per burst, not per row: one claim takes every due row there is room for, and the
 * successes are recorded together, one statement at a time for all the attempts that
 * ended meanwhile (an attempt counts as in flight until its result is recorded).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { RawBuilder } from 'kysely'
import pg from 'pg'
import { runCloseSteps } from '../lifecycle.ts'
import type { Logger } from '../logger.ts'
import { backoffDelay, isPermanent } from '../retry.ts'
import {
  claimDue,
  markAllDelivered,
  markFailed,
  nextDueAt,
  type OutboxDb,
  type OutboxRow,
  type OutboxTable,
  releaseClaims,
} from './outbox.repository.ts'

/**
 * The outcome of one delivery attempt: delivered (with the answer's status), or failed,
 * retried with backoff unless `permanent` (then a dead letter at once).
 */
export type OutboxAttempt =
  | { ok: true; status: number }
  | { ok: false; status: number | null; error: string; permanent?: boolean }

/** Dependencies of {@link createOutboxSender}. */
export interface OutboxSenderDeps {
  /** The pool for claims and results (a Kysely handle on the outbox's database). */
  db: OutboxDb
  /** Logger; the sender takes a child named after it. */
  log: Logger
  /**
   * Where the LISTEN connection goes: a `postgres://` URL, or a factory of new,
   * unconnected clients (called again after each lost connection).
   */
  listen: string | (() => pg.Client)
  /** The outbox table and the channel its writers notify. */
  outbox: OutboxTable
}

/** Options of {@link createOutboxSender}. */
export interface OutboxSenderOptions<R extends OutboxRow> {
  /** The sender's name: its log `component`, and `bourse-<name>` as its LISTEN connection's application_name. */
  name: string
  /** Attempts in flight at once. */
  concurrency: number
  /**
   * How long a claim holds before another sender may take the row, in ms; should exceed
   * the longest attempt, or a slow attempt may be delivered twice.
   */
  leaseMs: number
  /** Backoff before the first retry, doubled per attempt (then jittered), in ms. */
  retryBaseMs: number
  /** Longest backoff between two attempts, in ms. */
  retryMaxMs: number
  /** Longest sleep between two looks at the table when no notification comes, in ms. @defaultValue 1000 */
  pollMs?: number
  /** Random numbers in [0, 1) for the backoff jitter (tests make it fixed). @defaultValue Math.random */
  random?: () => number
  /** More columns each claimed row carries (see `ClaimOptions.extraReturning`). @defaultValue none */
  extraReturning?: RawBuilder<unknown>
  /**
   * Delivers one claimed row. It should bound its own time (below `leaseMs`) and resolve
   * to the outcome; a throw counts as a failed attempt (permanent for a `PermanentError`).
   */
  deliver: (row: R) => Promise<OutboxAttempt>
  /** Called once a successful attempt is recorded (metrics). @defaultValue none */
  onDelivered?: (row: R, status: number) => void
  /** What the sender's log lines say about a row besides its id and attempt. @defaultValue nothing more */
  logContext?: (row: R) => Record<string, unknown>
}

/** Counters of a sender, since it started. */
export interface OutboxSenderStats {
  /** Rows claimed. */
  claimed: number
  /** Rows delivered. */
  delivered: number
  /** Attempts that failed and were scheduled again. */
  retried: number
  /** Rows that became dead letters. */
  deadLettered: number
  /** Attempts running now. */
  inFlight: number
  /** True while the LISTEN connection is up. */
  listening: boolean
}

/** A running outbox sender. */
export interface OutboxSender {
  /**
   * Delivers until `signal` aborts, then stops claiming, hands back the rows claimed but not
   * started, lets the attempts in flight finish and record their results, and resolves.
   * Call it once.
   */
  run(signal: AbortSignal): Promise<void>
  /** Live counters. */
  readonly stats: Readonly<OutboxSenderStats>
}

/**
 * The delay before a row's next attempt after `attempt` failures so far (0 for the first
 * retry): the platform's exponential backoff with full jitter, uniform in
 * [0, min(max, base * 2^attempt)]. The schedule is the row's (attempts are counted in it),
 * so a row taken over by another sender keeps its place in it.
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

function positive(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number >= 1 (got ${value})`)
}

function nonEmpty(name: string, value: string): void {
  if (typeof value !== 'string' || value.trim() === '') throw new RangeError(`${name} must be a non-empty string`)
}

/** The failed attempt a throwing `deliver` stands for. */
function thrownAttempt(err: unknown): OutboxAttempt {
  const e = err instanceof Error ? err : new Error(String(err))
  return { ok: false, status: null, error: `${e.name}: ${e.message}`, permanent: isPermanent(err) }
}

/** Creates a sender; nothing connects before {@link OutboxSender.run}. */
export function createOutboxSender<R extends OutboxRow>(deps: OutboxSenderDeps, options: OutboxSenderOptions<R>): OutboxSender {
  const { db, outbox } = deps
  const { name, concurrency, retryBaseMs, retryMaxMs, leaseMs, extraReturning } = options
  const pollMs = options.pollMs ?? 1000
  const random = options.random ?? Math.random
  nonEmpty('name', name)
  nonEmpty('outbox.table', outbox.table)
  nonEmpty('outbox.channel', outbox.channel)
  for (const [option, value] of Object.entries({ concurrency, retryBaseMs, retryMaxMs, leaseMs, pollMs })) {
    positive(option, value)
  }
  const log = deps.log.child({ component: name })
  const stats: OutboxSenderStats = { claimed: 0, delivered: 0, retried: 0, deadLettered: 0, inFlight: 0, listening: false }
  const inFlight = new Set<Promise<void>>()
  let started = false

  // The loop sleeps on `wakeUp`; `woken` remembers a wake that came while it was busy, so
  // a notification arriving during a claim is never lost.
  let woken = false
  /** True when the last claim filled every free slot, so more rows may be due. */
  let backlog = false
  let wakeUp: (() => void) | undefined
  /**
   * The earliest moment a pending row is known to become due: from the last read of the
   * due index, and the retries this sender scheduled since.
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
        await markAllDelivered(db, outbox, round)
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

  async function deliver(row: R): Promise<void> {
    let result: OutboxAttempt
    try {
      result = await options.deliver(row)
    } catch (err) {
      result = thrownAttempt(err)
    }
    const context = { ...options.logContext?.(row), id: row.id, attempt: row.attempts + 1 }
    if (result.ok) {
      await recordDelivered(row.id, result.status)
      stats.delivered++
      try {
        options.onDelivered?.(row, result.status)
      } catch (err) {
        log.error({ err, ...context }, 'onDelivered failed')
      }
      log.debug({ ...context, status: result.status }, 'delivered')
      return
    }
    const delay = retryDelayMs(row.attempts, retryBaseMs, retryMaxMs, random)
    const nextAttemptAt = new Date(Date.now() + delay)
    const status = await markFailed(db, outbox, row.id, {
      error: result.error,
      status: result.status,
      nextAttemptAt,
      permanent: result.permanent === true,
    })
    if (status === 'dead') {
      stats.deadLettered++
      const why = result.permanent === true ? 'failed permanently' : 'failed past its retry period'
      log.warn({ ...context, error: result.error }, `${why}: dead letter`)
    } else if (status === 'pending') {
      stats.retried++
      log.info({ ...context, error: result.error, retryInMs: delay }, 'failed, will retry')
      // The retry may be due before the loop's planned wake-up.
      knownDueAt = Math.min(knownDueAt, nextAttemptAt.getTime())
      wake()
    }
  }

  function start(row: R): void {
    const task = deliver(row)
      .catch((err: unknown) => {
        // Recording the result failed: the lease runs out and the row is delivered again.
        log.error({ err, id: row.id }, 'recording an attempt failed')
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
      application_name: `bourse-${name}`,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
    })
  }

  /** Keeps one LISTEN connection up until `signal` aborts, reconnecting with backoff. */
  async function listen(signal: AbortSignal): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      const client = createListenClient()
      // Ending the client also stops a connection attempt that hangs. Once only: the stop
      // may end it mid-connect, and ending it again would wait for an end already past.
      let ending: Promise<void> | undefined
      const endClient = () => (ending ??= client.end().catch(() => {}))
      // The stop ends the client and settles `stopped`; the loop only runs while not stopped.
      const stopped = Promise.withResolvers<void>()
      const onAbort = () => {
        stopped.resolve()
        void endClient()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      const lost = new Promise<unknown>((resolve) => {
        client.on('error', resolve)
        client.on('end', () => resolve(new Error('connection ended')))
      })
      client.on('notification', (message) => {
        if (message.channel === outbox.channel) wake()
      })
      try {
        // pg's connect() never settles when end() comes before its socket is open, and the
        // stop can come then (a sender stopped right after it started hung in CI): the
        // connect is raced with the stop, which ends the client below.
        const connecting = client.connect()
        connecting.catch(() => {})
        await Promise.race([connecting, stopped.promise])
        if (!signal.aborted) {
          await client.query(`LISTEN ${client.escapeIdentifier(outbox.channel)}`)
          stats.listening = true
          if (failures > 0) log.info('LISTEN connection back')
          failures = 0
          // Rows committed while nobody listened have no notification coming.
          wake()
          const err = await Promise.race([lost, stopped.promise])
          if (!signal.aborted) log.error({ err }, 'LISTEN connection lost, reconnecting')
        }
      } catch (err) {
        if (!signal.aborted) log.error({ err }, 'LISTEN connection failed, retrying')
      } finally {
        stats.listening = false
      }
      signal.removeEventListener('abort', onAbort)
      await endClient()
      if (signal.aborted) break
      failures++
      // Polling delivers meanwhile, only slower.
      await sleep(Math.max(minSleepMs, backoffDelay(failures, RECONNECT_BASE_MS, RECONNECT_MAX_MS, random)), undefined, { signal }).catch(() => {})
    }
  }

  async function claimLoop(signal: AbortSignal): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      woken = false
      let sleepMs = pollMs
      try {
        const free = concurrency - inFlight.size
        if (free > 0) {
          const claimed = await claimDue<R>(db, outbox, { limit: free, leaseMs, extraReturning })
          if (signal.aborted) {
            // Stopping: hand back what was claimed but not started, for another sender.
            await releaseClaims(
              db,
              outbox,
              claimed.map((row) => row.id),
            )
            break
          }
          stats.claimed += claimed.length
          backlog = claimed.length === free
          for (const row of claimed) start(row)
          if (claimed.length === 0 && !woken) {
            // Nothing due: look when the next retry or lease end comes. (When a
            // notification came during the claim, claim again at once instead.) After a
            // claim that found work this read is skipped, one statement less per burst: in
            // a burst every commit notifies, and what was known to come stays known.
            const due = await nextDueAt(db, outbox)
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
        log.error({ err, failures }, 'claiming failed')
        sleepMs = Math.max(minSleepMs, backoffDelay(failures, RECONNECT_BASE_MS, pollMs, random))
      }
      await nap(sleepMs, signal)
    }
  }

  return {
    stats,
    async run(signal) {
      if (started) throw new Error(`${name} already ran`)
      started = true
      const listening = listen(signal)
      try {
        await claimLoop(signal)
      } finally {
        // Stop claiming first (done), then let the attempts in flight record their results.
        await runCloseSteps(
          [
            ['attempts in flight', () => Promise.all([...inFlight])],
            ['listen connection', () => listening],
          ],
          log,
          `${name} close step failed`,
        )
      }
    },
  }
}
