/** `bourse callback-sender`: delivers signed order results to callback URLs, with retries and dead letters. */
import { closeDb, createDb } from '../platform/db/index.ts'
import { createCallbackSender } from '../trading/webhooks/callback-sender.service.ts'
import { parseAllowedNetworks } from '../trading/webhooks/callback-url.ts'
import { createServiceContext, intOption, parseCommand, runCommand, UsageError } from './context.ts'

const spec = {
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
} as const

/** Runs the command; resolves to the exit code. */
export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const concurrency = intOption('concurrency', args.values.concurrency, 1, 10_000)
    const leaseMs = intOption('lease-ms', args.values['lease-ms'], 100, 86_400_000) ?? 30_000
    const { config, log, lifecycle } = createServiceContext('callback-sender')
    let allowedNetworks
    try {
      allowedNetworks = parseAllowedNetworks(config.CALLBACK_ALLOWED_NETWORKS)
    } catch (err) {
      throw new UsageError(`CALLBACK_ALLOWED_NETWORKS: ${(err as Error).message}`)
    }
    const schema = config.DATABASE_SCHEMA
    const resolvedConcurrency = concurrency ?? config.CALLBACK_CONCURRENCY
    const db = createDb({ url: config.DATABASE_URL, schema, max: Math.min(20, resolvedConcurrency + 2), log })
    lifecycle.onClose('database', () => closeDb(db))
    const sender = createCallbackSender(
      { db, log, listen: config.DATABASE_URL, schema },
      {
        concurrency: resolvedConcurrency,
        timeoutMs: config.CALLBACK_TIMEOUT_MS,
        retryBaseMs: config.CALLBACK_RETRY_BASE_MS,
        retryMaxMs: config.CALLBACK_RETRY_MAX_MS,
        allowedNetworks,
        leaseMs,
      },
    )
    const progress = setInterval(() => log.info({ ...sender.stats }, 'progress'), 10_000)
    lifecycle.onClose('progress', () => clearInterval(progress))
    // Registered after the database, so a shutdown first lets the attempts in flight finish
    // and record their results, then closes the pool.
    const running = sender.run(lifecycle.signal)
    lifecycle.onClose('callback sender', () => running.catch(() => {}))
    try {
      await Promise.race([lifecycle.stopping, running])
      await running
      return 0
    } catch (err) {
      log.error({ err }, 'callback sender failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
