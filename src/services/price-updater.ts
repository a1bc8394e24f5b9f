/** `bourse price-updater`: Kafka market topic → Redis contract, exactly once. */
import { createPriceUpdater } from '../market/price-updater.consumer.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { kafkaBrokers } from '../platform/config.ts'
import { ensureTopic, openConsumerServiceClients } from '../platform/kafka/clients.ts'
import { closeRedis, createRedis } from '../platform/redis.ts'
import { createServiceContext, intOption, parseCommand, runCommand } from './context.ts'

const spec = {
  name: 'price-updater',
  usage: '[--topic main_topic] [--group NAME] [--until-idle]',
  description:
    'Consumes price ticks from Kafka as a consumer group and appends them to the Redis histories\n' +
    '(stock1, stock2, ...), exactly once across crashes. Malformed messages go to the dead-letter topic.',
  options: {
    topic: { type: 'string' },
    group: { type: 'string', default: 'price-updater' },
    'dead-letter-topic': { type: 'string' },
    'until-idle': { type: 'boolean', default: false },
    'batch-size': { type: 'string', default: '5000' },
    'idle-ms': { type: 'string', default: '500' },
    'instance-id': { type: 'string' },
  },
  help: {
    topic: 'Topic to consume (default: MARKET_TOPIC, main_topic)',
    group: 'Consumer group; instances in one group share the partitions',
    'dead-letter-topic': 'Where malformed messages go (default: <topic>.dead-letter)',
    'until-idle': 'Exit 0 once every partition is applied up to its end',
    'batch-size': 'Most messages applied in one atomic Redis step',
    'idle-ms': 'Quiet time before flushing and checking whether caught up',
    'instance-id': 'Static group member id: a restarted instance gets its partitions back at once',
  },
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const batchSize = intOption('batch-size', args.values['batch-size'], 1, 100_000)
    const idleMs = intOption('idle-ms', args.values['idle-ms'], 10, 600_000)
    const { config, log, lifecycle } = createServiceContext('price-updater')
    const topic = args.values.topic ?? config.MARKET_TOPIC
    const group = args.values.group
    const settings = { brokers: kafkaBrokers(config) }

    const redis = createRedis(config.REDIS_URL, log, 'price-updater')
    lifecycle.onClose('redis', () => closeRedis(redis))
    const { admin, producer, consumer } = openConsumerServiceClients(settings, group, args.values['instance-id'], lifecycle)

    const deadLetterTopic = args.values['dead-letter-topic'] ?? `${topic}.dead-letter`
    await ensureTopic(admin, topic, config.MARKET_TOPIC_PARTITIONS, log)
    await ensureTopic(admin, deadLetterTopic, 1, log)
    const updater = createPriceUpdater(
      {
        consumer,
        producer,
        history: createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS }),
        log,
      },
      {
        topic,
        group,
        deadLetterTopic,
        untilIdle: args.values['until-idle'],
        ...(batchSize !== undefined && { batchSize }),
        ...(idleMs !== undefined && { idleMs }),
      },
    )
    const progress = setInterval(() => log.info({ ...updater.stats }, 'progress'), 10_000)
    lifecycle.onClose('progress', () => clearInterval(progress))
    // Registered after the connections, so a shutdown waits for the in-flight batches and
    // the final flush before it closes them.
    const running = updater.run(lifecycle.signal)
    lifecycle.onClose('price updater', () => running.catch(() => {}))
    try {
      const stats = await running
      process.stdout.write(
        `applied ${stats.messages} messages: ${stats.appended} appended, ${stats.updated} price updates, ` +
          `${stats.unchanged} unchanged, ${stats.replayed} replays skipped, ${stats.deadLettered} dead-lettered\n`,
      )
      return 0
    } catch (err) {
      log.error({ err }, 'price updater failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
