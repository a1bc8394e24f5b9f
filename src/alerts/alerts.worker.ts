/**
 * An alerts worker: a BullMQ worker taking run jobs from the `alerts` queue (see
 * `alerts.jobs.ts` for what a run does) and the email outbox's sender, in one process.
 *
 * eBay's 429 pauses the whole queue for its Retry-After (BullMQ's manual rate limit, seen
 * by every worker of the queue) and puts the job back without using up an attempt. A run
 * that cannot succeed (eBay refusing our credentials or the request) fails at once; other
 * failures are retried with the job's backoff until its attempts run out. Either way the
 * run's row says why (`alert_runs.error`), and the job stays in BullMQ's failed set.
 */
import { RateLimitError, UnrecoverableError } from 'bullmq'
import type pg from 'pg'
import type { Db } from '../database.ts'
import type { Logger } from '../platform/logger.ts'
import type { Mailer } from '../platform/mail/mailer.ts'
import { openWorker, type QueueConnection } from '../platform/queues.ts'
import { createAlertEmailSender } from './alert-emails.sender.ts'
import { createRunHandler, PermanentRunError, type RunHandlerOptions, type RunOutcome } from './alerts.jobs.ts'
import type { RunJobData } from './distributor.ts'
import { type EbayClient, EbayError } from './ebay.client.ts'
import { RUNS_QUEUE } from './queues.ts'
import { recordRunAttemptFailed } from './runs.repository.ts'
import type { UnsubscribeSigner } from './unsubscribe.ts'

/** Times a job may lose its worker (killed mid-run) before BullMQ fails it. */
const MAX_STALLS = 10

/** Dependencies of {@link startAlertsWorker}. */
export interface AlertsWorkerDeps {
  db: Db
  log: Logger
  /** Where the queues live. */
  queues: QueueConnection
  ebay: Pick<EbayClient, 'search'>
  mailer: Pick<Mailer, 'send'>
  signer: UnsubscribeSigner
  /** Where the email sender's LISTEN connection goes. */
  listen: string | (() => pg.Client)
  /** Schema of the tables (names the outbox's channel). */
  schema: string
}

/** Options of {@link startAlertsWorker}. */
export interface AlertsWorkerOptions extends Omit<RunHandlerOptions, 'outbox'> {
  /** Runs handled at once. */
  concurrency: number
  /** How long a job stays locked without a renewal (a killed worker's jobs come back after it), in ms. @defaultValue 30000 */
  lockMs?: number
  /** Longest a close waits for runs in flight before forcing, in ms. @defaultValue 30000 */
  closeTimeoutMs?: number
  /** Emails in flight at once. @defaultValue 8 */
  emailConcurrency?: number
  /** How long a claimed email is held by its sender, in ms. @defaultValue 60000 */
  emailLeaseMs?: number
  /** First retry delay of a failing email, in ms. @defaultValue 5000 */
  emailRetryBaseMs?: number
  /** Longest sleep of the email sender without a notification, in ms. @defaultValue 1000 */
  emailPollMs?: number
}

/** Counters of a worker, since it started. */
export interface AlertsWorkerStats {
  /** Run jobs handled to the end (stored, skipped, or found done already). */
  runs: number
  /** Runs stored by this worker. */
  stored: number
  /** Runs skipped (the alert paused before the run). */
  skipped: number
  /** Attempts that failed (each retried, or the run failed). */
  failedAttempts: number
  /** Times eBay's 429 paused the queue. */
  rateLimited: number
}

/** Starts taking run jobs and sending emails; `close()` stops both (idempotent). */
export function startAlertsWorker(deps: AlertsWorkerDeps, options: AlertsWorkerOptions) {
  const log = deps.log.child({ component: 'alerts-worker' })
  const sender = createAlertEmailSender(
    { db: deps.db, log: deps.log, listen: deps.listen, schema: deps.schema, mailer: deps.mailer },
    {
      concurrency: options.emailConcurrency ?? 8,
      ...(options.emailLeaseMs !== undefined && { leaseMs: options.emailLeaseMs }),
      ...(options.emailRetryBaseMs !== undefined && { retryBaseMs: options.emailRetryBaseMs }),
      ...(options.emailPollMs !== undefined && { pollMs: options.emailPollMs }),
    },
  )
  const handler = createRunHandler(
    { db: deps.db, ebay: deps.ebay, signer: deps.signer, log: deps.log },
    { ...options, outbox: sender.outbox },
  )
  const stats: AlertsWorkerStats = { runs: 0, stored: 0, skipped: 0, failedAttempts: 0, rateLimited: 0 }
  const lockMs = options.lockMs ?? 30_000
  const opened = openWorker<RunJobData, RunOutcome>(
    RUNS_QUEUE,
    async (job) => {
      try {
        const outcome = await handler.run(job)
        stats.runs++
        if (outcome === 'stored') stats.stored++
        else if (outcome === 'skipped') stats.skipped++
        return outcome
      } catch (err) {
        if (err instanceof EbayError && err.code === 'rate_limited') {
          stats.rateLimited++
          const waitMs = err.retryAfterMs ?? 1000
          log.warn({ retryAfterMs: waitMs }, 'eBay rate limit: pausing the alerts queue')
          await opened.worker.rateLimit(waitMs)
          throw new RateLimitError()
        }
        stats.failedAttempts++
        log.warn({ err, runId: job.data.runId, attempt: job.attemptsMade + 1 }, 'alert run failed')
        if (err instanceof PermanentRunError || (err instanceof EbayError && !err.transient)) {
          throw new UnrecoverableError(err.message)
        }
        throw err
      }
    },
    deps.queues,
    {
      concurrency: options.concurrency,
      // BullMQ honours a manual rate limit only on a worker that has a limiter; this one is far above any real rate.
      limiter: { max: 1_000_000, duration: 1000 },
      lockDuration: lockMs,
      stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
      // A job whose worker died is handed to another; only one that keeps killing its
      // workers is failed (BullMQ's default fails it at the second stall).
      maxStalledCount: MAX_STALLS,
      closeTimeoutMs: options.closeTimeoutMs ?? 30_000,
    },
  )
  // A job BullMQ failed by itself (stalled too often) never reached the handler's own
  // bookkeeping: record the run as failed too, so the API shows why. Runs the handler has
  // recorded already are no longer queued and stay as they are.
  opened.worker.on('failed', (job, err) => {
    if (!job) return
    void job
      .isFailed()
      .then((final) => (final ? recordRunAttemptFailed(deps.db, job.data.runId, `${err.name}: ${err.message}`, true) : undefined))
      .catch((recordErr: unknown) => log.error({ err: recordErr, runId: job.data.runId }, 'recording a failed run failed'))
  })
  const stopSending = new AbortController()
  const sending = sender.run(stopSending.signal)
  let closing: Promise<void> | undefined
  return {
    stats,
    /** The email sender's counters. */
    emails: sender.stats,
    /** Stops taking runs (those in flight finish), then stops the email sender. */
    close: () =>
      (closing ??= (async () => {
        try {
          await opened.close()
        } finally {
          stopSending.abort()
          await sending
        }
      })()),
  }
}

/** A running alerts worker. */
export type AlertsWorker = ReturnType<typeof startAlertsWorker>
