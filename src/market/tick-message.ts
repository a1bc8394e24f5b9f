/**
 * The Kafka form of a tick on the market topic: key = stock (so one stock's ticks stay
 * in one partition, in order), value = JSON `{ "time", "stock", "price" }` with price a
 * number or null. Headers `bourse-source` and `bourse-line` say which file row it came
 * from (used by the resumable producer).
 */
import { quote } from '../platform/quote.ts'
import { stockNameProblem, type Tick, toTick } from './tick.ts'

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
  /^\{"time":"((?:[01]\d|2[0-3])[0-5]\d[0-5]\d)","stock":"([A-Za-z][A-Za-z0-9_-]{0,63})","price":(null|(?:0|[1-9]\d{0,14})(?:\.\d{1,10})?)\}$/

/**
 * Stock names of canonical messages already found acceptable, each to its one copy: a name
 * is checked once, not per tick, and the ticks of a stock share one string (whose hash the
 * grouping by stock then computes once).
 */
const acceptedStocks = new Map<string, string>()
const MAX_ACCEPTED_STOCKS = 10_000

/**
 * Whether a canonical price text is exactly what `String(Number(text))` writes, so it can
 * be stored as it came: no trailing zero in the fraction, at most 15 significant digits
 * (every such decimal is the shortest text of its double) and not below 1e-6 (written
 * with an exponent).
 */
function isOwnToken(text: string): boolean {
  if (text.length > 16 || text.startsWith('0.000000')) return false
  return !(text.endsWith('0') && text.includes('.'))
}

/** A decoded tick: its price's JSON text when the message had it in canonical form, and where it came from. */
export type DecodedTick<S> = Tick & { token?: string; source?: S }

/**
 * Decodes and validates a message value; the key, when present, must name the same
 * stock. `source` (the message's position) is set on the tick.
 */
export function decodeTick<S = never>(
  key: string | undefined | null,
  value: string | undefined | null,
  source?: S,
): { ok: true; tick: DecodedTick<S> } | { ok: false; reason: string } {
  if (value === undefined || value === null || value === '') return { ok: false, reason: 'empty message value' }
  const canonical = CANONICAL.exec(value)
  if (canonical) {
    const [, time = '', named = '', price = ''] = canonical
    let stock = acceptedStocks.get(named)
    if (stock === undefined) {
      const problem = stockNameProblem(named)
      if (problem) return { ok: false, reason: problem }
      if (acceptedStocks.size >= MAX_ACCEPTED_STOCKS) acceptedStocks.clear()
      acceptedStocks.set(named, named)
      stock = named
    }
    if (key && key !== stock) {
      return { ok: false, reason: `key ${quote(key)} does not match stock ${quote(stock)}` }
    }
    if (price === 'null') return { ok: true, tick: { time, stock, price: null, token: '""', source } }
    return { ok: true, tick: { time, stock, price: Number(price), token: isOwnToken(price) ? price : undefined, source } }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (err) {
    return { ok: false, reason: `value is not JSON: ${(err as Error).message}` }
  }
  const result = toTick(parsed)
  if (!result.ok) return result
  if (key && key !== result.tick.stock) {
    return { ok: false, reason: `key ${quote(key)} does not match stock ${quote(result.tick.stock)}` }
  }
  return { ok: true, tick: { ...result.tick, source } }
}
