/** `bourse verifier`: orders from Kafka → external verification → executed in PostgreSQL. */
import { createStockHistoryRepository } from '../market/index.ts'
import { kafkaBrokers } from '../platform/config.ts'
import { closeDb, createDb, migrateToLatest } from '../platform/db/index.ts'
import { ensureTopic, openConsumerServiceClients } from '../platform/kafka/clients.ts'
import { closeRedis, createRedis } from '../platform/redis.ts'
import { defineUserProjection } from '../trading/user-projection.ts'
import { createVerificationClient } from '../trading/verification.client.ts'
import { createOrderVerifier } from '../trading/verifier.consumer.ts'
import { createServiceContext, intOption, parseCommand, runCommand } from './context.ts'

const spec = {
  name: 'verifier',
  usage: '[--group verifier] [--max-in-flight N] [--instance-id ID]',
  description:
    'Consumes orders from the orders topic (ORDERS_TOPIC), verifies each user through the external API\n' +
    '(VERIFY_URL; longer than VERIFY_TIMEOUT_MS is stalled and rejected), then fills or rejects the order\n' +
    'in PostgreSQL exactly once, updates the Redis userN projection and publishes the status.\n' +
    'Thousands of verifications wait at once; run more instances in one group to share the partitions.',
  options: {
    group: { type: 'string', default: 'verifier' },
    'max-in-flight': { type: 'string' },
    'instance-id': { type: 'string' },
  },
  help: {
    group: 'Consumer group; instances in one group share the partitions',
    'max-in-flight': 'Orders verifying at once in this instance (default: VERIFY_MAX_IN_FLIGHT, 5000)',
    'instance-id': 'Static group member id: a restarted instance gets its partitions back at once',
  },
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const maxInFlightArg = intOption('max-in-flight', args.values['max-in-flight'], 1, 100_000)
    const { config, log, lifecycle } = createServiceContext('verifier')
    const topic = config.ORDERS_TOPIC
    const deadLetterTopic = `${topic}.dead-letter`
    const maxInFlight = maxInFlightArg ?? config.VERIFY_MAX_IN_FLIGHT
    const settings = { brokers: kafkaBrokers(config) }

    // Close steps run in reverse order: the verifier (registered last) finishes and
    // commits first, then the connections it used are closed.
    const db = createDb({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, max: 20, log })
    lifecycle.onClose('postgres', () => closeDb(db))
    // Thousands of orders in flight publish their states and read prices in bursts: one write per turn.
    const redis = createRedis(config.REDIS_URL, log, 'verifier', { autoPipelining: true })
    defineUserProjection(redis)
    lifecycle.onClose('redis', () => closeRedis(redis))
    const { admin, producer, consumer } = openConsumerServiceClients(settings, args.values.group, args.values['instance-id'], lifecycle)
    const client = createVerificationClient({ url: config.VERIFY_URL, maxConnections: maxInFlight, log })
    lifecycle.onClose('verification client', () => client.close())

    try {
      await migrateToLatest(db, config.DATABASE_SCHEMA)
      await ensureTopic(admin, topic, config.ORDERS_TOPIC_PARTITIONS, log)
      await ensureTopic(admin, deadLetterTopic, 1, log)
    } catch (err) {
      log.error({ err }, 'verifier could not start')
      await lifecycle.shutdown('done')
      return 1
    }

    const verifier = createOrderVerifier(
      {
        consumer,
        producer,
        db,
        redis,
        prices: createStockHistoryRepository(redis),
        client,
        log,
      },
      {
        topic,
        deadLetterTopic,
        maxInFlight,
        timeoutMs: config.VERIFY_TIMEOUT_MS,
        callbacks: { retryForMs: config.CALLBACK_RETRY_FOR_MS, schema: config.DATABASE_SCHEMA },
      },
    )
    const progress = setInterval(() => log.info({ ...verifier.stats }, 'progress'), 10_000)
    lifecycle.onClose('progress', () => clearInterval(progress))
    const running = verifier.run(lifecycle.signal)
    lifecycle.onClose('verifier', () => running.catch(() => {}))
    try {
      await running
      return 0
    } catch (err) {
      log.error({ err }, 'verifier failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
