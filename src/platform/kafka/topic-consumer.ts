/**
 * What every consumer of one topic sets up the same way: its metrics, its offset tracker,
 * its dead-letter sender, and a session that opens the stream from the group's committed
 * offsets with a committer following the group, and closes both in order. A consumer keeps
 * only its domain rule and its loop (one batch at a time, two pipelined, or one message per
 * slot).
 */
import type { Registry } from 'prom-client'
import type { Logger } from '../logger.ts'
import type { StringConsumer, StringProducer } from './clients.ts'
import { consumeTopic, type StringStream } from './consumer.ts'
import { createDeadLetterSender, type DeadLetterSender } from './dead-letter.ts'
import { type ConsumerMetrics, createConsumerMetrics } from './metrics.ts'
import { createOffsetCommitter, createOffsetTracker, type OffsetTracker } from './offsets.ts'

/** Dependencies of {@link createTopicConsumer}. */
export interface TopicConsumerDeps {
  /** The group consumer. */
  consumer: StringConsumer
  /** Sends dead letters. */
  producer: Pick<StringProducer, 'send'>
  log: Logger
  /** Where the consumer's counters go. @defaultValue none: nothing is counted */
  metrics?: Registry | undefined
  /** Called for each failed dead-letter send that is retried (a consumer's own stats). */
  onDeadLetterRetry?: (err: unknown) => void
}

/** Options of {@link createTopicConsumer}. */
export interface TopicConsumerOptions {
  /** The topic consumed. */
  topic: string
  /** Where messages that cannot be handled go, with the reason in `bourse-error`. */
  deadLetterTopic: string
  /** The group label of the metrics. @defaultValue the consumer's group id */
  group?: string
  /** First delay before retrying a failed step (dead letters, and the consumer's own steps through `backoff`). @defaultValue 100 */
  retryBaseMs?: number | undefined
  /** Longest delay between two attempts of a step. @defaultValue 5000 */
  retryMaxMs?: number | undefined
}

/** An open stream and its committer. */
export interface TopicSession {
  readonly stream: StringStream
  /** Commits how far every message is finished, for the partitions owned now; true when offsets were sent. */
  commit(): Promise<boolean>
  /** Commits what is finished, stops following the group and closes the stream; failures are logged. */
  close(): Promise<void>
}

/** The pieces of one topic's consumer. */
export interface TopicConsumer {
  readonly metrics: ConsumerMetrics
  /** Which offsets are finished: a consumer takes what it starts and finishes it when done. */
  readonly tracker: OffsetTracker
  readonly deadLetter: DeadLetterSender
  /** The backoff of the consumer's retried steps, for `retry()`: `{ baseMs, maxMs }`. */
  readonly backoff: { readonly baseMs: number; readonly maxMs: number }
  /** Opens the stream from the group's committed offsets (the earliest without any). */
  open(): Promise<TopicSession>
}

/** Creates the pieces; nothing is opened until {@link TopicConsumer.open}. */
export function createTopicConsumer(deps: TopicConsumerDeps, options: TopicConsumerOptions): TopicConsumer {
  const { consumer, producer, log } = deps
  const { topic } = options
  const metrics = createConsumerMetrics(deps.metrics, { topic, group: options.group ?? consumer.groupId })
  const tracker = createOffsetTracker()
  const backoff = Object.freeze({ baseMs: options.retryBaseMs ?? 100, maxMs: options.retryMaxMs ?? 5000 })
  const deadLetter = createDeadLetterSender(
    { producer, log, metrics, ...(deps.onDeadLetterRetry && { onRetry: deps.onDeadLetterRetry }) },
    { topic: options.deadLetterTopic, retryBaseMs: backoff.baseMs, retryMaxMs: backoff.maxMs },
  )
  return {
    metrics,
    tracker,
    deadLetter,
    backoff,
    async open() {
      // Following the group from before the first assignment: partitions taken away by a
      // rebalance are no longer this instance's to commit.
      const committer = createOffsetCommitter({ consumer, tracker, log }, { topic })
      let stream: StringStream
      try {
        stream = await consumeTopic(consumer, topic)
      } catch (err) {
        committer.close()
        throw err
      }
      return {
        stream,
        commit: () => committer.commit(),
        async close() {
          await committer.commit()
          committer.close()
          await stream.close().catch((err: unknown) => log.warn({ err, topic }, 'closing stream failed'))
        },
      }
    },
  }
}
