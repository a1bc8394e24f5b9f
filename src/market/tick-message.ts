/**
 * The Kafka form of a tick on the market topic: key = stock (so one stock's ticks stay
 * in one partition, in order), value = JSON `{ "time", "stock", "price" }` with price a
 * number or null. Headers `bourse-source` and `bourse-line` say which file row it came
 * from (used by the resumable producer).
 */
import { quote } from '../platform/quote.ts'
import { stockNameProblem, type Tick, type TickResult, timeProblem, toTick } from './tick.ts'

/** Header naming the source (a content hash of the CSV file). */
export const SOURCE_HEADER = 'bourse-source'
/** Header with the CSV line number of the row. */
export const LINE_HEADER = 'bourse-line'

/** A tick as a Kafka message (string key, value and headers). */
export interface TickMessage {
  topic: string
  key: string
  value: string
  headers?: Map<string, string> | Record<string, string>
}

/** Encodes a tick for the market topic. */
export function encodeTick(topic: string, tick: Tick, headers?: Record<string, string>): TickMessage {
  const message: TickMessage = { topic, key: tick.stock, value: JSON.stringify(tick) }
  if (headers) message.headers = headers
  return message
}

/**
 * The exact text {@link encodeTick} writes (key order, no spaces, plain decimal price):
 * matched by one regular expression instead of JSON.parse on the consumer's hot path.
 * Anything else is parsed and validated in full.
 */
const CANONICAL =
  /^\{"time":"(\d{6})","stock":"([A-Za-z][A-Za-z0-9_-]{0,63})","price":(null|(?:0|[1-9]\d{0,14})(?:\.\d{1,10})?)\}$/

/** Decodes and validates a message value; the key, when present, must name the same stock. */
export function decodeTick(key: string | undefined | null, value: string | undefined | null): TickResult {
  if (value === undefined || value === null || value === '') return { ok: false, reason: 'empty message value' }
  const canonical = CANONICAL.exec(value)
  if (canonical) {
    const [, time = '', stock = '', price = ''] = canonical
    const problem = timeProblem(time) ?? stockNameProblem(stock)
    if (problem) return { ok: false, reason: problem }
    if (key && key !== stock) {
      return { ok: false, reason: `key ${quote(key)} does not match stock ${quote(stock)}` }
    }
    return { ok: true, tick: { time, stock, price: price === 'null' ? null : Number(price) } }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (err) {
    return { ok: false, reason: `value is not JSON: ${(err as Error).message}` }
  }
  const result = toTick(parsed)
  if (result.ok && key && key !== result.tick.stock) {
    return { ok: false, reason: `key ${quote(key)} does not match stock ${quote(result.tick.stock)}` }
  }
  return result
}
