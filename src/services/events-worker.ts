/** `bourse events-worker`: events from Kafka → validated → PostgreSQL (`events` or `event_errors`), each once. */
import { createEventsWorker } from '../events/events.consumer.ts'
import { kafkaBrokers } from '../platform/config.ts'
import { closeDb, createDb, migrateToLatest } from '../platform/db/index.ts'
import { ensureTopic, openConsumerServiceClients } from '../platform/kafka/clients.ts'
import { createServiceContext, intOption, parseCommand, runCommand } from './context.ts'

const spec = {
  name: 'events-worker',
  usage: '[--group events-worker] [--batch-size N] [--instance-id ID]',
  description:
    'Consumes accepted events from the events topic (EVENTS_TOPIC) in batches, validates each against\n' +
    'the JSON Schema of its type (`bourse event-types`) and its timestamp, and stores it exactly once:\n' +
    'valid ones in `events`, invalid ones with every reason in `event_errors`. Types without a schema\n' +
    'are stored unvalidated or rejected (EVENTS_UNKNOWN_TYPE). Undecodable messages go to\n' +
    '`<topic>.dead-letter`. Run more instances in one group to share the partitions.',
  options: {
    group: { type: 'string', default: 'events-worker' },
    'batch-size': { type: 'string' },
    'instance-id': { type: 'string' },
  },
  help: {
    group: 'Consumer group; instances in one group share the partitions',
    'batch-size': 'Most events written in one transaction (default: EVENTS_BATCH_SIZE, 1000)',
    'instance-id': 'Static group member id: a restarted instance gets its partitions back at once',
  },
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const batchSizeArg = intOption('batch-size', args.values['batch-size'], 1, 100_000)
    const { config, log, lifecycle } = createServiceContext('events-worker')
    const topic = config.EVENTS_TOPIC
    const deadLetterTopic = `${topic}.dead-letter`
    const batchSize = batchSizeArg ?? config.EVENTS_BATCH_SIZE
    const settings = { brokers: kafkaBrokers(config) }

    // Close steps run in reverse order: the worker (registered last) finishes its batch
    // and commits first, then the connections it used are closed.
    const db = createDb({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, max: 4, log })
    lifecycle.onClose('postgres', () => closeDb(db))
    const { admin, producer, consumer } = openConsumerServiceClients(settings, args.values.group, args.values['instance-id'], lifecycle)

    try {
      await migrateToLatest(db, config.DATABASE_SCHEMA)
      await ensureTopic(admin, topic, config.EVENTS_TOPIC_PARTITIONS, log)
      await ensureTopic(admin, deadLetterTopic, 1, log)
    } catch (err) {
      log.error({ err }, 'events worker could not start')
      await lifecycle.shutdown('done')
      return 1
    }

    const worker = createEventsWorker(
      { consumer, producer, db, log },
      {
        topic,
        deadLetterTopic,
        batchSize,
        unknownType: config.EVENTS_UNKNOWN_TYPE,
        futureToleranceMs: config.EVENTS_FUTURE_TOLERANCE_MS,
      },
    )
    const progress = setInterval(() => log.info({ ...worker.stats }, 'progress'), 10_000)
    lifecycle.onClose('progress', () => clearInterval(progress))
    const running = worker.run(lifecycle.signal)
    lifecycle.onClose('events worker', () => running.catch(() => {}))
    try {
      await running
      return 0
    } catch (err) {
      log.error({ err }, 'events worker failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
