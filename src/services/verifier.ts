/** `bourse verifier`: orders from Kafka → external verification → executed in PostgreSQL. */
import { createStockHistoryRepository } from '../market/index.ts'
import { intOption } from '../platform/command.ts'
import { defineUserProjection } from '../trading/user-projection.ts'
import { createVerificationClient } from '../trading/verification.client.ts'
import { createOrderVerifier } from '../trading/verifier.consumer.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'verifier',
    usage: '[--group verifier] [--max-in-flight N] [--instance-id ID]',
    description:
      'Consumes orders from the orders topic (ORDERS_TOPIC), verifies each user through the external API\n' +
      '(VERIFY_URL; longer than VERIFY_TIMEOUT_MS is stalled and rejected), then fills or rejects the order\n' +
      'in PostgreSQL exactly once, updates the Redis userN projection and publishes the status.\n' +
      'Thousands of verifications wait at once; run more instances in one group to share the partitions.',
    options: { 'max-in-flight': { type: 'string' } },
    help: { 'max-in-flight': 'Orders verifying at once in this instance (default: VERIFY_MAX_IN_FLIGHT, 5000)' },
  },
  daemon: true,
  consumer: { group: 'verifier' },
  parse: ({ values }, config) => ({
    topic: config.ORDERS_TOPIC,
    deadLetterTopic: `${config.ORDERS_TOPIC}.dead-letter`,
    maxInFlight: intOption('max-in-flight', values['max-in-flight'], 1, 100_000) ?? config.VERIFY_MAX_IN_FLIGHT,
  }),
  needs: (options, config) => ({
    db: { max: 20 },
    // Thousands of orders in flight publish their states and read prices in bursts: one write per turn.
    redis: { autoPipelining: true },
    topics: [
      { name: options.topic, partitions: config.ORDERS_TOPIC_PARTITIONS },
      { name: options.deadLetterTopic, partitions: 1 },
    ],
  }),
  async start({ config, log, lifecycle, db, redis, consumer, producer, metrics }, { topic, deadLetterTopic, maxInFlight }) {
    defineUserProjection(redis)
    const client = createVerificationClient({ url: config.VERIFY_URL, maxConnections: maxInFlight, log })
    lifecycle.onClose('verification client', () => client.close())
    const verifier = createOrderVerifier(
      { consumer, producer, db, redis, prices: createStockHistoryRepository(redis), client, log, metrics: metrics.registry },
      {
        topic,
        deadLetterTopic,
        maxInFlight,
        timeoutMs: config.VERIFY_TIMEOUT_MS,
        callbacks: { retryForMs: config.CALLBACK_RETRY_FOR_MS, schema: config.DATABASE_SCHEMA },
      },
    )
    return { done: verifier.run(lifecycle.signal), stats: verifier.stats, gauges: ['inFlight'] }
  },
})
