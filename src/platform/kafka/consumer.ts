/**
 * Reading a topic as a consumer group: opening the stream and pulling batches from it.
 *
 * Waiting for messages goes through the stream's async iterator, and what is already
 * buffered is taken with `read()`, without a promise per message. Waiting on 'readable'
 * events ourselves stalled a partition under backpressure with @platformatic/kafka 2.12
 * (at the same offset every time, on a 1,000,000-message topic); the iterator never did.
 */
import { type Message, type MessagesStream, MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import type { StringConsumer } from './clients.ts'

/** A message of string key, value and headers. */
export type StringMessage = Message<string, string, string, string>
/** A stream of {@link StringMessage}. */
export type StringStream = MessagesStream<string, string, string, string>

/** Joins the group and streams `topic` from the group's committed offsets (the earliest when it has none). */
export function consumeTopic(consumer: StringConsumer, topic: string): Promise<StringStream> {
  return consumer.consume({
    topics: [topic],
    mode: MessagesStreamModes.COMMITTED,
    fallbackMode: MessagesStreamFallbackModes.EARLIEST,
  })
}

/** Options of {@link createBatchReader}. */
export interface BatchReaderOptions<T> {
  /** Most weight in one batch: a batch ends once it holds this much (a call may ask for less). */
  maxBatch: number
  /** Turns each message into what the batch holds (decoding each message once). @defaultValue the message itself */
  decode?: (message: StringMessage) => T
  /** The weight of one item (the events a message carries, say). @defaultValue 1 */
  weight?: (item: NoInfer<T>) => number
  /**
   * How long a batch that is not full waits for more messages after its first, in ms. 0:
   * a batch ends as soon as no further message is buffered. @defaultValue 0
   */
  lingerMs?: number
  /** How long a read waits for a first message before it answers 'idle', in ms. @defaultValue forever */
  idleMs?: number
}

/**
 * Pulls the next batch: the messages (decoded), 'idle' when none came within `idleMs`, or
 * 'stopped' when `signal` aborted or the stream ended. A batch in hand when the signal
 * aborts is still returned. `limit` lowers the batch's most weight for this call.
 */
export type BatchReader<T> = (signal: AbortSignal, limit?: number) => Promise<T[] | 'idle' | 'stopped'>

const identity = <T>(value: T) => value
const one = () => 1

/** Creates a reader of batches from `stream`; only one call may wait at a time. */
export function createBatchReader<T>(
  stream: StringStream,
  options: BatchReaderOptions<T> & { decode: (message: StringMessage) => T },
): BatchReader<T>
export function createBatchReader(stream: StringStream, options: BatchReaderOptions<StringMessage>): BatchReader<StringMessage>
export function createBatchReader<T>(stream: StringStream, options: BatchReaderOptions<T>): BatchReader<T> {
  const { maxBatch, idleMs } = options
  const decode = options.decode ?? (identity as (message: StringMessage) => T)
  const weight = options.weight ?? one
  const lingerMs = options.lingerMs ?? 0
  const iterator = stream[Symbol.asyncIterator]()
  let pending: Promise<IteratorResult<StringMessage>> | undefined

  /** The next message from the iterator, a timeout after `ms` (none when undefined), or the abort. */
  const wait = async (ms: number | undefined, signal: AbortSignal) => {
    pending ??= iterator.next()
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    try {
      const waits: Array<Promise<IteratorResult<StringMessage> | 'timeout' | 'stopped'>> = [
        pending,
        new Promise<'stopped'>((resolve) => {
          onAbort = () => resolve('stopped')
          if (signal.aborted) onAbort()
          else signal.addEventListener('abort', onAbort, { once: true })
        }),
      ]
      if (ms !== undefined) {
        waits.push(
          new Promise<'timeout'>((resolve) => {
            timer = setTimeout(() => resolve('timeout'), Math.max(0, ms))
          }),
        )
      }
      return await Promise.race(waits)
    } finally {
      clearTimeout(timer)
      if (onAbort) signal.removeEventListener('abort', onAbort)
    }
  }

  return async (signal, limit = maxBatch) => {
    const batch: T[] = []
    let size = 0
    let lingerUntil = Number.POSITIVE_INFINITY
    for (;;) {
      let result: IteratorResult<StringMessage> | 'timeout' | 'stopped'
      if (batch.length === 0) result = await wait(idleMs, signal)
      else if (lingerMs === 0) {
        // More is buffered (see below): it comes at once, no timer or abort needed.
        pending ??= iterator.next()
        result = await pending
      } else result = await wait(lingerUntil - Date.now(), signal)
      if (result === 'timeout') return batch.length > 0 ? batch : 'idle'
      if (result === 'stopped') return batch.length > 0 ? batch : 'stopped'
      pending = undefined
      if (result.done) return batch.length > 0 ? batch : 'stopped'
      const first = decode(result.value)
      batch.push(first)
      size += weight(first)
      // What is already buffered is taken without a promise per message; waiting for more
      // is left to the iterator.
      while (size < limit) {
        const message = stream.read() as StringMessage | null
        if (message === null) break
        const item = decode(message)
        batch.push(item)
        size += weight(item)
      }
      if (size >= limit) return batch
      if (lingerMs === 0) {
        if (stream.readableLength === 0) return batch
      } else if (lingerUntil === Number.POSITIVE_INFINITY) lingerUntil = Date.now() + lingerMs
    }
  }
}
