/** `bourse alerts-worker`: runs due alerts (search eBay, store, email) from the alerts queue, and mails the email outbox. */
import { RateLimitError, UnrecoverableError } from 'bullmq'
import { createRunHandler, PermanentRunError } from '../alerts/alerts.jobs.ts'
import type { RunJobData } from '../alerts/distributor.ts'
import { createEbayClient, EbayError } from '../alerts/ebay.client.ts'
import { insightRulesFromConfig } from '../alerts/insights.ts'
import { RUNS_QUEUE } from '../alerts/queues.ts'
import { createUnsubscribeSigner } from '../alerts/unsubscribe.ts'
import { alertEmailOutbox, createAlertEmailSender, mailDomain } from '../alerts/alert-emails.sender.ts'
import { intOption } from '../platform/command.ts'
import { createMailer } from '../platform/mail/mailer.ts'
import { openWorker, type QueueConnection } from '../platform/queues.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'alerts-worker',
    usage: '[--concurrency N] [--instance-id ID]',
    description:
      'Product alerts: takes run jobs from the `alerts` queue, searches eBay (EBAY_BASE_URL) for each\n' +
      'alert\'s phrase, stores the 20 cheapest items and queues the list email (and an insight email when\n' +
      'the history gives one) in one transaction, and mails the email outbox over SMTP (SMTP_URL), once per\n' +
      '(alert, due time). Failed runs are retried with backoff (ALERTS_JOB_ATTEMPTS); eBay\'s 429 pauses the\n' +
      'whole queue for its Retry-After. Instances may run side by side.',
    options: { concurrency: { type: 'string' } },
    help: { concurrency: 'Runs handled at once (default: ALERTS_WORKER_CONCURRENCY, 20)' },
  },
  daemon: true,
  parse: ({ values }, config) => ({
    concurrency: intOption('concurrency', values.concurrency, 1, 1000) ?? config.ALERTS_WORKER_CONCURRENCY,
  }),
  needs: ({ concurrency }) => ({ db: { max: Math.min(30, concurrency + 4) } }),
  async start({ config, log, lifecycle, db }, { concurrency }) {
    const connection: QueueConnection = { url: config.REDIS_URL, prefix: config.QUEUE_PREFIX, log }
    const ebay = createEbayClient({
      baseUrl: config.EBAY_BASE_URL,
      clientId: config.EBAY_CLIENT_ID,
      clientSecret: config.EBAY_CLIENT_SECRET,
      marketplaceId: config.EBAY_MARKETPLACE_ID,
      timeoutMs: config.EBAY_TIMEOUT_MS,
      connections: concurrency,
      log,
    })
    lifecycle.onClose('ebay client', () => ebay.close())
    const mailer = createMailer({ url: config.SMTP_URL, from: config.MAIL_FROM, timeoutMs: config.SMTP_TIMEOUT_MS, log })
    lifecycle.onClose('mailer', () => mailer.close())
    const outbox = alertEmailOutbox(config.DATABASE_SCHEMA)
    const handler = createRunHandler(
      { db, ebay, signer: createUnsubscribeSigner(db), log },
      {
        publicUrl: config.PUBLIC_URL,
        messageIdDomain: mailDomain(config.MAIL_FROM),
        insights: insightRulesFromConfig(config),
        insightMinIntervalMs: config.INSIGHT_MIN_INTERVAL_MS,
        emailRetryForMs: config.ALERTS_EMAIL_RETRY_FOR_MS,
        outbox,
      },
    )
    const stats = { runs: 0, stored: 0, skipped: 0, failedAttempts: 0, rateLimited: 0 }
    const worker = openWorker<RunJobData>(
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
            // eBay said "too many": the whole queue waits its Retry-After (every worker of
            // it), and this job goes back to the queue without using up an attempt.
            stats.rateLimited++
            log.warn({ retryAfterMs: err.retryAfterMs }, 'eBay rate limit: pausing the alerts queue')
            await worker.worker.rateLimit(err.retryAfterMs ?? 1000)
            throw new RateLimitError()
          }
          stats.failedAttempts++
          if (err instanceof PermanentRunError || (err instanceof EbayError && !err.transient)) {
            throw new UnrecoverableError(err.message)
          }
          throw err
        }
      },
      connection,
      // BullMQ honours a manual rate limit only on a worker that has a limiter; this one is far above any real rate.
      {
        concurrency,
        limiter: { max: 100_000, duration: 1000 },
        lockDuration: config.ALERTS_JOB_LOCK_MS,
        stalledInterval: Math.max(1000, Math.floor(config.ALERTS_JOB_LOCK_MS / 2)),
        closeTimeoutMs: config.EBAY_TIMEOUT_MS + 10_000,
      },
    )
    const sender = createAlertEmailSender({ db, log, listen: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, mailer }, { concurrency: 8, leaseMs: config.ALERTS_EMAIL_LEASE_MS })
    const sending = sender.run(lifecycle.signal)
    lifecycle.onClose('email sender', () => sending)
    lifecycle.onClose('run worker', () => worker.close())
    return { stats, status: () => ({ emails: { ...sender.stats } }) }
  },
})
