/** Dead-letter helpers for consumer tests: a producer whose first dead-letter sends fail, and the records of a dead-letter topic. */
import assert from 'node:assert/strict'
import type { SendOptions } from '@platformatic/kafka'
import type { StringProducer } from '../../src/platform/kafka/index.ts'
import { readTopic, type TopicRecord } from './topic-reader.ts'

/**
 * The real `producer`, except that its first `failures` sends carrying a message for
 * `deadLetterTopic` reject, as when that topic's leader is unavailable. `failed()` says
 * how many did.
 */
export function failingDeadLetterProducer(
  producer: StringProducer,
  deadLetterTopic: string,
  failures: number,
): { producer: StringProducer; failed: () => number } {
  let failed = 0
  const send = (options: SendOptions<string, string, string, string>) => {
    if (failed < failures && options.messages.some((m) => m.topic === deadLetterTopic)) {
      failed++
      return Promise.reject(new Error(`${deadLetterTopic} is unavailable (failure ${failed} of ${failures})`))
    }
    return producer.send(options)
  }
  const wrapped = new Proxy(producer, {
    get(target, property) {
      if (property === 'send') return send
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
  return { producer: wrapped, failed: () => failed }
}

/** Every record of a dead-letter topic. */
export async function deadLetters(topic: string): Promise<TopicRecord[]> {
  return (await readTopic(topic)).flat()
}

/** Asserts the headers every dead letter carries. */
export function assertDeadLetterHeaders(
  record: TopicRecord,
  source: { topic: string; partition: number; offset: bigint },
  reason: RegExp,
): void {
  assert.match(record.headers.get('bourse-error') ?? '', reason)
  assert.equal(record.headers.get('bourse-source-topic'), source.topic)
  assert.equal(record.headers.get('bourse-source-partition'), String(source.partition))
  assert.equal(record.headers.get('bourse-source-offset'), source.offset.toString())
}
