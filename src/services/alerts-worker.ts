/** `bourse alerts-worker`: runs due alerts (search eBay, store, email) from the alerts queue, and mails the email outbox. */
import { mailDomain } from '../alerts/alert-emails.sender.ts'
import { startAlertsWorker } from '../alerts/alerts.worker.ts'
import { createEbayClient } from '../alerts/ebay.client.ts'
import { insightRulesFromConfig } from '../alerts/insights.ts'
import { createUnsubscribeSigner } from '../alerts/unsubscribe.ts'
import { intOption } from '../platform/command.ts'
import { createMailer } from '../platform/mail/mailer.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'alerts-worker',
    usage: '[--concurrency N] [--instance-id ID]',
    description:
      'Product alerts: takes run jobs from the `alerts` queue, searches eBay (EBAY_BASE_URL) for each\n' +
      "alert's phrase, stores the 20 cheapest items and queues the list email (and an insight email when\n" +
      'the history gives one) in one transaction, and mails the email outbox over SMTP (SMTP_URL), once per\n' +
      "(alert, due time). Failed runs are retried with backoff (ALERTS_JOB_ATTEMPTS); eBay's 429 pauses the\n" +
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
    const worker = startAlertsWorker(
      {
        db,
        log,
        queues: { url: config.REDIS_URL, prefix: config.QUEUE_PREFIX, log },
        ebay,
        mailer,
        signer: createUnsubscribeSigner(db),
        listen: config.DATABASE_URL,
        schema: config.DATABASE_SCHEMA,
      },
      {
        concurrency,
        lockMs: config.ALERTS_JOB_LOCK_MS,
        closeTimeoutMs: config.EBAY_TIMEOUT_MS + 10_000,
        emailLeaseMs: config.ALERTS_EMAIL_LEASE_MS,
        publicUrl: config.PUBLIC_URL,
        messageIdDomain: mailDomain(config.MAIL_FROM),
        insights: insightRulesFromConfig(config),
        insightMinIntervalMs: config.INSIGHT_MIN_INTERVAL_MS,
        emailRetryForMs: config.ALERTS_EMAIL_RETRY_FOR_MS,
      },
    )
    // Closed first: stop taking runs and let those in flight finish, then the clients go.
    lifecycle.onClose('alerts worker', () => worker.close())
    return { stats: worker.stats, status: () => ({ emails: { ...worker.emails } }) }
  },
})
