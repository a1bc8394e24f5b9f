/**
 * Dead letters, written once: a message that can never be processed goes to the
 * dead-letter topic with its key and value as they were, and headers saying why and
 * where it came from. A failed send is retried with backoff until it succeeds or the
 * consumer stops; it never stops the consumer.
 */
import type { Logger } from '../logger.ts'
import { truncate } from '../quote.ts'
import { retry } from '../retry.ts'
import type { StringProducer } from './clients.ts'
import type { ConsumerMetrics } from './metrics.ts'
import type { StringMessageToProduce } from './send-batcher.ts'

/** Header names of a dead letter. */
export const DEAD_LETTER_HEADERS = Object.freeze({
  /** Why the message was refused. */
  error: 'bourse-error',
  /** Topic of the refused message. */
  sourceTopic: 'bourse-source-topic',
  /** Partition of the refused message. */
  sourcePartition: 'bourse-source-partition',
  /** Offset of the refused message. */
  sourceOffset: 'bourse-source-offset',
})

/** Longest reason put into a header or a log line; a longer one is cut. */
export const MAX_REASON_LENGTH = 1000

/** A message to dead-letter and why. */
export interface DeadLetter {
  /** The refused message (where it came from; its key and value unless given below). */
  message: { topic: string; partition: number; offset: bigint; key?: string | null | undefined; value?: string | null | undefined }
  /** Why it is refused (cut to {@link MAX_REASON_LENGTH}). */
  reason: string
  /** Key to send instead of the message's (one event of a message of many). */
  key?: string
  /** Value to send instead of the message's. */
  value?: string
}

/** `reason` cut to `max` characters, marked as cut: a huge bad message cannot flood headers and logs. */
export function cutReason(reason: string, max: number = MAX_REASON_LENGTH): string {
  return truncate(reason, max)
}

/** The message sent to `topic` for a dead letter. */
export function deadLetterMessage(topic: string, letter: DeadLetter): StringMessageToProduce {
  const { message } = letter
  return {
    topic,
    key: letter.key ?? message.key ?? '',
    value: letter.value ?? message.value ?? '',
    headers: {
      [DEAD_LETTER_HEADERS.error]: cutReason(letter.reason),
      [DEAD_LETTER_HEADERS.sourceTopic]: message.topic,
      [DEAD_LETTER_HEADERS.sourcePartition]: String(message.partition),
      [DEAD_LETTER_HEADERS.sourceOffset]: message.offset.toString(),
    },
  }
}

/** Dependencies of {@link createDeadLetterSender}. */
export interface DeadLetterSenderDeps {
  /** Sends the dead letters (not closed by the sender). */
  producer: Pick<StringProducer, 'send'>
  /** Tells each dead letter (warn) and each failed send. */
  log: Logger
  /** Counts dead letters and retried sends. @defaultValue none */
  metrics?: ConsumerMetrics
  /** Told of each failed send that is retried (the consumer's own counters). @defaultValue none */
  onRetry?: (err: unknown) => void
}

/** Options of {@link createDeadLetterSender}. */
export interface DeadLetterSenderOptions {
  /** The dead-letter topic. */
  topic: string
  /** Ceiling of the first delay before a failed send is retried, in ms. @defaultValue 100 */
  retryBaseMs?: number
  /** Highest ceiling of a delay between two sends, in ms. @defaultValue 5000 */
  retryMaxMs?: number
}

/**
 * Sends dead letters, all of one call in one produce request; resolves once the broker has
 * them. A failed send is retried with backoff; only `signal` ends the retries (with a
 * `RetryAbortedError`), and the caller then leaves the messages uncommitted.
 */
export type DeadLetterSender = (letters: readonly DeadLetter[], signal?: AbortSignal) => Promise<void>

/** Creates a {@link DeadLetterSender}. */
export function createDeadLetterSender(deps: DeadLetterSenderDeps, options: DeadLetterSenderOptions): DeadLetterSender {
  const { producer, log, metrics } = deps
  const { topic } = options
  return async (letters, signal) => {
    if (letters.length === 0) return
    const messages = letters.map((letter) => deadLetterMessage(topic, letter))
    await retry(() => producer.send({ messages }), {
      what: 'dead-lettering',
      log,
      context: { deadLetterTopic: topic, count: letters.length },
      ...(signal && { signal }),
      baseMs: options.retryBaseMs ?? 100,
      maxMs: options.retryMaxMs ?? 5000,
      onRetry: (err) => {
        metrics?.retry()
        deps.onRetry?.(err)
      },
    })
    metrics?.deadLetters(letters.length)
    for (const { message, reason } of letters) {
      log.warn({ partition: message.partition, offset: message.offset.toString(), reason: cutReason(reason) }, 'dead-lettered message')
    }
  }
}
