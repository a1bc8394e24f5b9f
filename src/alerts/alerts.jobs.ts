/**
 * The run job: one due time of one alert. It searches eBay for the alert's phrase, and in
 * one statement stores the 20 cheapest items, marks the run done, and puts the list email
 * (and an insight email, when the stored history gives one) in the outbox. The outbox
 * senders mail them after the commit.
 *
 * Exactly once per (alert, due time): the statement locks the run and writes only while
 * it is `queued` (see `runs.repository.ts`), and each email's outbox row is unique per
 * (alert, due time, kind). A worker killed before the commit leaves the run queued and
 * BullMQ hands the job to another worker (stalled job); one killed after it leaves a done
 * run, which the job's next attempt sees and leaves alone.
 *
 * Failures: what may pass (eBay 5xx, 429, a garbled answer, the database) is thrown for
 * BullMQ to retry with backoff; on the last attempt, or for what retrying cannot fix, the
 * run is recorded as failed with the reason before the job fails.
 */
import type { Logger } from '../platform/logger.ts'
import type { OutboxTable } from '../platform/outbox/outbox.repository.ts'
import type { Db } from '../database.ts'
import type { RunJobData } from './distributor.ts'
import { type EbayClient, EbayError } from './ebay.client.ts'
import { renderInsightEmail, renderListEmail } from './emails/index.ts'
import { findInsights, type InsightRules, insightAllowed } from './insights.ts'
import { type EmailToQueue, loadRun, markRunSkipped, recordRunAttemptFailed, runSummaries, storeRun } from './runs.repository.ts'
import { type UnsubscribeSigner, unsubscribeUrl } from './unsubscribe.ts'

/** What became of one run job. */
export type RunOutcome = 'stored' | 'already-stored' | 'skipped' | 'gone'

/** Thrown when a run cannot succeed however often it is tried (BullMQ must not retry it). */
export class PermanentRunError extends Error {
  override name = 'PermanentRunError'
}

/** Dependencies of {@link createRunHandler}. */
export interface RunHandlerDeps {
  db: Db
  /** Searches eBay. */
  ebay: Pick<EbayClient, 'search'>
  /** Signs the unsubscribe links. */
  signer: UnsubscribeSigner
  log: Logger
}

/** Options of {@link createRunHandler}. */
export interface RunHandlerOptions {
  /** Where readers reach the API (`PUBLIC_URL`), for the unsubscribe links. */
  publicUrl: string
  /** The domain of the Message-IDs (the sender address's). */
  messageIdDomain: string
  /** The insight rules. */
  insights: InsightRules
  /** Least time between two insight emails of one alert, in ms. */
  insightMinIntervalMs: number
  /** How long a failing email is retried, in ms. */
  emailRetryForMs: number
  /** The email outbox (its table and NOTIFY channel). */
  outbox: OutboxTable
}

/** A job as the handler reads it (BullMQ's `Job` fits). */
export interface RunJob {
  data: RunJobData
  /** Attempts already made before this one. */
  attemptsMade: number
  opts: { attempts?: number | undefined }
}

/** The outbox id of an alert's email of one kind for one due time; also the Message-ID's local part. */
export function alertEmailId(kind: 'list' | 'insight', alertId: string, dueAt: Date): string {
  return `alert-${alertId}-${dueAt.getTime()}-${kind}`
}

/** Creates the function that handles one run job. */
export function createRunHandler(deps: RunHandlerDeps, options: RunHandlerOptions) {
  const { db, ebay, signer } = deps
  const log = deps.log.child({ component: 'alerts-run' })
  const messageId = (id: string) => `<${id}@${options.messageIdDomain}>`

  async function handle(job: RunJob): Promise<RunOutcome> {
    const { runId } = job.data
    const loaded = await loadRun(db, runId)
    if (!loaded?.alert) return 'gone'
    const { run, alert } = loaded
    if (run.status !== 'queued') return 'already-stored'
    if (alert.status !== 'active') {
      await markRunSkipped(db, runId, `the alert was paused (${alert.paused_by ?? 'user'}) before the run`)
      return 'skipped'
    }

    const found = await ebay.search(alert.phrase, alert.currency === null ? {} : { currency: alert.currency })
    const token = await signer.tokenFor(alert.id)
    const unsubscribe = unsubscribeUrl(options.publicUrl, token)
    const listHeaders = {
      'List-Unsubscribe': `<${unsubscribe}>`,
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    }
    const dueAt = run.due_at
    const expiresAt = new Date(Date.now() + options.emailRetryForMs)
    // The flat rule must see the run before the newest reach its span too (it is said once
    // per stretch): the history goes one flat span and two periods back at least.
    const period = alert.frequency_minutes * 60_000
    const historyFrom = new Date(dueAt.getTime() - Math.max(options.insights.windowMs, options.insights.flatMs + 2 * period))

    /** One of the run's emails for the outbox: its id and Message-ID made of the alert, the due time and the kind. */
    const email = (kind: 'list' | 'insight', rendered: { subject: string; html: string; text: string }): EmailToQueue => {
      const id = alertEmailId(kind, alert.id, dueAt)
      return { id, kind, recipient: alert.email, ...rendered, headers: { ...listHeaders, 'Message-ID': messageId(id) }, expiresAt }
    }
    const emails = [
      email(
        'list',
        renderListEmail({
          alert: { id: alert.id, phrase: alert.phrase, frequency_minutes: alert.frequency_minutes, email: alert.email },
          dueAt,
          items: found.items,
          unsubscribeUrl: unsubscribe,
        }),
      ),
    ]

    // Insights read the runs stored before this one (none before the alert's first run).
    // Whether one may go today is decided again under the alert's lock when storing.
    const cheapest = found.items[0]
    if (alert.last_run_at !== null && insightAllowed(alert.last_insight_at, dueAt, options.insightMinIntervalMs)) {
      const history = await runSummaries(db, alert.id, historyFrom, dueAt)
      const insights = findInsights({
        alert: { max_price: alert.max_price, currency: alert.currency },
        current: {
          dueAt,
          cheapest:
            cheapest === undefined
              ? null
              : { itemId: cheapest.itemId, title: cheapest.title, total: cheapest.total, currency: cheapest.currency, itemWebUrl: cheapest.itemWebUrl },
        },
        history,
        rules: options.insights,
      })
      if (insights.length > 0) {
        emails.push(
          email(
            'insight',
            renderInsightEmail({
              alert: { id: alert.id, phrase: alert.phrase, email: alert.email, max_price: alert.max_price, currency: alert.currency },
              insights,
              unsubscribeUrl: unsubscribe,
            }),
          ),
        )
        log.debug({ alertId: alert.id, kinds: insights.map((i) => i.kind) }, 'insight email')
      }
    }
    const stored = await storeRun(db, {
      runId,
      result: { items: found.items, resultTotal: found.total, skipped: found.skipped },
      emails,
      insightMinIntervalMs: options.insightMinIntervalMs,
      channel: options.outbox.channel,
    })
    return stored ? 'stored' : 'already-stored'
  }

  return {
    /**
     * Handles a job; on an error it records the attempt on the run (failed for good on the
     * last attempt or for a {@link PermanentRunError}) and rethrows it for BullMQ.
     */
    async run(job: RunJob): Promise<RunOutcome> {
      try {
        return await handle(job)
      } catch (err) {
        // A rate limit puts the job back without using up an attempt: nothing to record.
        if (err instanceof EbayError && err.code === 'rate_limited') throw err
        const permanent = err instanceof PermanentRunError || (err instanceof EbayError && !err.transient)
        const final = permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
        const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
        await recordRunAttemptFailed(db, job.data.runId, reason, final).catch((recordErr: unknown) => {
          log.error({ err: recordErr, runId: job.data.runId }, 'recording a failed run attempt failed')
        })
        throw err
      }
    },
  }
}

