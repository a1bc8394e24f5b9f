/** `bourse callback-sender`: delivers signed order results to callback URLs, with retries and dead letters. */
import { intOption, UsageError } from '../platform/command.ts'
import { createCallbackSender } from '../trading/webhooks/callback-sender.service.ts'
import { parseAllowedNetworks } from '../trading/webhooks/callback-url.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'callback-sender',
    usage: '[--concurrency N] [--lease-ms N]',
    description:
      'Delivers the callbacks of finished orders (the webhook_deliveries outbox) to their URLs as signed\n' +
      'Standard Webhooks POSTs, within milliseconds of the commit (LISTEN/NOTIFY), at least once: failures\n' +
      'are retried with exponential backoff for CALLBACK_RETRY_FOR_MS, then kept as dead letters.\n' +
      'Instances may run side by side. Private and loopback addresses are refused unless listed in\n' +
      'CALLBACK_ALLOWED_NETWORKS.',
    options: {
      concurrency: { type: 'string' },
      'lease-ms': { type: 'string', default: '30000' },
    },
    help: {
      concurrency: 'Callbacks in flight at once (default: CALLBACK_CONCURRENCY, 256)',
      'lease-ms': 'How long a claimed callback is held; after a crash, others send it again after this',
    },
  },
  daemon: true,
  parse: ({ values }, config) => {
    let allowedNetworks
    try {
      allowedNetworks = parseAllowedNetworks(config.CALLBACK_ALLOWED_NETWORKS)
    } catch (err) {
      throw new UsageError(`CALLBACK_ALLOWED_NETWORKS: ${(err as Error).message}`)
    }
    return {
      allowedNetworks,
      concurrency: intOption('concurrency', values.concurrency, 1, 10_000) ?? config.CALLBACK_CONCURRENCY,
      leaseMs: intOption('lease-ms', values['lease-ms'], 100, 86_400_000)!,
    }
  },
  needs: ({ concurrency }) => ({ db: { max: Math.min(20, concurrency + 2), migrate: false } }),
  async start({ config, log, lifecycle, db, metrics }, options) {
    const sender = createCallbackSender(
      { db, log, listen: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, metrics: metrics.registry },
      {
        ...options,
        timeoutMs: config.CALLBACK_TIMEOUT_MS,
        retryBaseMs: config.CALLBACK_RETRY_BASE_MS,
        retryMaxMs: config.CALLBACK_RETRY_MAX_MS,
      },
    )
    return { done: sender.run(lifecycle.signal), stats: sender.stats, gauges: ['inFlight'] }
  },
})
