/** `bourse price-updater`: Kafka market topic → Redis contract, exactly once. */
import { createPriceUpdater } from '../market/price-updater.consumer.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { intOption } from '../platform/command.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'price-updater',
    usage: '[--topic main_topic] [--group NAME] [--until-idle] [--rebuild]',
    description:
      'Consumes price ticks from Kafka as a consumer group and appends them to the Redis histories\n' +
      '(stock1, stock2, ...), exactly once across crashes. Malformed messages go to the dead-letter topic.\n' +
      'Redis holds the record of what was applied. If Redis lost it (flushed, or restarted without its\n' +
      'data) while Kafka has the group\'s committed offsets, the updater refuses to start (exit 65), and a\n' +
      'running one stops (exit 65): run it once with --rebuild --until-idle, then as usual.',
    options: {
      topic: { type: 'string' },
      'dead-letter-topic': { type: 'string' },
      'until-idle': { type: 'boolean', default: false },
      'batch-size': { type: 'string', default: '5000' },
      'idle-ms': { type: 'string', default: '500' },
      rebuild: { type: 'boolean', default: false },
    },
    help: {
      topic: 'Topic to consume (default: MARKET_TOPIC, main_topic)',
      'dead-letter-topic': 'Where malformed messages go (default: <topic>.dead-letter)',
      'until-idle': 'Exit 0 once every partition is applied up to its end',
      'batch-size': 'Most messages applied in one atomic Redis step',
      'idle-ms': 'Quiet time before flushing and checking whether caught up',
      rebuild:
        "After Redis lost data: delete the group's applied offsets and replay every partition from its beginning. " +
        "Histories are not cleared; each tick sets its time's price again, so they end as after a clean run " +
        '(re-run `bourse seed` first if the stocks came from a fixture). Stop other instances of the group first',
    },
  },
  daemon: true,
  consumer: { group: 'price-updater' },
  parse: ({ values }, config) => {
    const topic = values.topic ?? config.MARKET_TOPIC
    return {
      topic,
      deadLetterTopic: values['dead-letter-topic'] ?? `${topic}.dead-letter`,
      untilIdle: values['until-idle'],
      batchSize: intOption('batch-size', values['batch-size'], 1, 100_000)!,
      idleMs: intOption('idle-ms', values['idle-ms'], 10, 600_000)!,
      rebuild: values.rebuild,
    }
  },
  needs: (options, config) => ({
    redis: {},
    topics: [
      { name: options.topic, partitions: config.MARKET_TOPIC_PARTITIONS },
      { name: options.deadLetterTopic, partitions: 1 },
    ],
  }),
  async start({ config, log, lifecycle, redis, consumer, producer, group, metrics }, options) {
    const history = createStockHistoryRepository(redis, {
      materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS,
      tickStreamMaxLen: config.MARKET_STREAM_MAX_LEN,
    })
    const updater = createPriceUpdater({ consumer, producer, history, log, metrics: metrics.registry }, { ...options, group })
    const done = updater.run(lifecycle.signal).then((stats) => {
      process.stdout.write(
        `applied ${stats.messages} messages: ${stats.appended} appended, ${stats.updated} price updates, ` +
          `${stats.unchanged} unchanged, ${stats.replayed} replays skipped, ${stats.deadLettered} dead-lettered\n`,
      )
    })
    return { done, stats: updater.stats }
  },
})
