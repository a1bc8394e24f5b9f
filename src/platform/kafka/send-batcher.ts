/**
 * Coalesces the sends of concurrent callers into few `producer.send` calls: messages
 * handed over within `lingerMs` of each other, or while the previous send is still
 * waiting for the broker, go out as one produce request. Each caller's promise settles
 * with the send that carried its message: resolved once the broker acknowledged it (with
 * the producer's acks), rejected when that send failed. A failed send fails only the
 * messages it carried.
 *
 * Why: with acks from all replicas a send costs a broker round trip and a produce
 * request of its own; under load, one request per HTTP request spent most of the API's
 * CPU in the Kafka client's protocol writes (measured with bench/events.bench.ts).
 */
import type { MessageToProduce } from '@platformatic/kafka'
import type { StringProducer } from './clients.ts'
import type { KafkaReachability } from './reachability.ts'

/** A message as the batcher sends it. */
export type StringMessageToProduce = MessageToProduce<string, string, string, string>

/** Options of {@link createSendBatcher}. */
export interface SendBatcherOptions {
  /** How long the first message of a send waits for others before it goes out, in ms. @defaultValue 1 */
  lingerMs?: number
  /** Most bytes of keys and values in one send (messages are never split; a larger one goes alone). @defaultValue 786432 (768 KiB) */
  maxBytes?: number
  /** Most sends waiting for the broker at once; more messages wait and join the next send. @defaultValue 1 */
  maxInFlight?: number
  /**
   * While it says the broker is down, `send` rejects at once with its
   * `KafkaUnreachableError` instead of waiting for the producer's retries to fail.
   * @defaultValue none: every message is handed to the producer
   */
  reachability?: Pick<KafkaReachability, 'assertReachable'> | undefined
}

/** Sends messages, coalesced with other callers'. */
export interface SendBatcher {
  /** Resolves once the broker acknowledged `message`; `bytes` is the size of its key and value. */
  send(message: StringMessageToProduce, bytes: number): Promise<void>
}

interface Queued {
  message: StringMessageToProduce
  bytes: number
  resolve: () => void
  reject: (err: unknown) => void
}

/** Creates a batcher over `producer` (not closed by it). */
export function createSendBatcher(producer: StringProducer, options: SendBatcherOptions = {}): SendBatcher {
  const lingerMs = options.lingerMs ?? 1
  const maxBytes = options.maxBytes ?? 768 * 1024
  const maxInFlight = options.maxInFlight ?? 1
  let queue: Queued[] = []
  let timer: NodeJS.Timeout | undefined
  let inFlight = 0

  const flush = () => {
    timer = undefined
    while (queue.length > 0 && inFlight < maxInFlight) {
      let bytes = 0
      let count = 0
      while (count < queue.length && (count === 0 || bytes + queue[count]!.bytes <= maxBytes)) bytes += queue[count++]!.bytes
      const batch = queue.length === count ? queue : queue.slice(0, count)
      queue = queue.length === count ? [] : queue.slice(count)
      inFlight++
      void producer.send({ messages: batch.map((q) => q.message) }).then(
        () => {
          for (const q of batch) q.resolve()
        },
        (err: unknown) => {
          for (const q of batch) q.reject(err)
        },
      ).finally(() => {
        inFlight--
        // What queued up meanwhile has waited long enough: it goes at once.
        if (queue.length > 0) {
          clearTimeout(timer)
          flush()
        }
      })
    }
  }

  return {
    send(message, bytes) {
      try {
        options.reachability?.assertReachable()
      } catch (err) {
        return Promise.reject(err as Error)
      }
      const { promise, resolve, reject } = Promise.withResolvers<void>()
      queue.push({ message, bytes, resolve, reject })
      if (timer === undefined && inFlight < maxInFlight) timer = setTimeout(flush, lingerMs)
      return promise
    },
  }
}
