/** `bourse events-worker`: events from Kafka → validated → PostgreSQL (`events` or `event_errors`), each once. */
import { createEventsWorker } from '../events/events.consumer.ts'
import { intOption } from '../platform/command.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'events-worker',
    usage: '[--group events-worker] [--batch-size N] [--instance-id ID]',
    description:
      'Consumes accepted events from the events topic (EVENTS_TOPIC) in batches, validates each against\n' +
      'the JSON Schema of its type (`bourse event-types`) and its timestamp, and stores it exactly once:\n' +
      'valid ones in `events`, invalid ones with every reason in `event_errors`. Types without a schema\n' +
      'are stored unvalidated or rejected (EVENTS_UNKNOWN_TYPE). Undecodable messages go to\n' +
      '`<topic>.dead-letter`. Run more instances in one group to share the partitions.',
    options: { 'batch-size': { type: 'string' } },
    help: { 'batch-size': 'Most events written in one transaction (default: EVENTS_BATCH_SIZE, 2500)' },
  },
  daemon: true,
  consumer: { group: 'events-worker' },
  parse: ({ values }, config) => ({
    topic: config.EVENTS_TOPIC,
    deadLetterTopic: `${config.EVENTS_TOPIC}.dead-letter`,
    batchSize: intOption('batch-size', values['batch-size'], 1, 100_000) ?? config.EVENTS_BATCH_SIZE,
  }),
  needs: (options, config) => ({
    db: { max: 4 },
    topics: [
      { name: options.topic, partitions: config.EVENTS_TOPIC_PARTITIONS },
      { name: options.deadLetterTopic, partitions: 1 },
    ],
  }),
  async start({ config, log, lifecycle, db, consumer, producer, metrics }, options) {
    const worker = createEventsWorker(
      { consumer, producer, db, log, metrics: metrics.registry },
      { ...options, unknownType: config.EVENTS_UNKNOWN_TYPE, futureToleranceMs: config.EVENTS_FUTURE_TOLERANCE_MS },
    )
    return { done: worker.run(lifecycle.signal), stats: worker.stats }
  },
})
