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

/*
 * The exact text {@link encodeTick} writes (key order, no spaces, plain decimal price) is
 * read by position on the consumer's hot path, instead of JSON.parse:
 *   {"time":"HHMMSS","stock":"NAME","price":PRICE}
 * HHMMSS a time of day, NAME a stock name, PRICE `null` or (0|[1-9]\d{0,14})(\.\d{1,10})?.
 * Anything else is parsed and validated in full.
 */
const TIME_AT = 9
const STOCK_AT = 26
const TIME_LABEL = '{"time":"'
const STOCK_LABEL = '","stock":"'
const PRICE_LABEL = '","price":'
const QUOTE = 34
const ZERO = 48
const DOT = 46

/** The digit at `at` of `text` (0-9), or -1. */
function digitAt(text: string, at: number): number {
  const d = text.charCodeAt(at) - ZERO
  return d >= 0 && d <= 9 ? d : -1
}

/** Whether `text` from `from` to `to` (excluded) is a canonical price number. */
function isCanonicalNumber(text: string, from: number, to: number): boolean {
  let at = from
  const first = digitAt(text, at)
  if (first < 0) return false
  at++
  if (first !== 0) {
    while (at < to && at - from < 15 && digitAt(text, at) >= 0) at++
  }
  if (at === to) return true
  if (text.charCodeAt(at) !== DOT) return false
  const fraction = ++at
  while (at < to && digitAt(text, at) >= 0) at++
  return at === to && at > fraction && at - fraction <= 10
}

/** Whether the six characters at `at` are an hhmmss time (000000 to 235959). */
function isTimeAt(text: string, at: number): boolean {
  const h1 = digitAt(text, at)
  const h2 = digitAt(text, at + 1)
  const m1 = digitAt(text, at + 2)
  const s1 = digitAt(text, at + 4)
  return (
    h1 >= 0 && h1 <= 2 && h2 >= 0 && (h1 < 2 || h2 <= 3) && m1 >= 0 && m1 <= 5 && digitAt(text, at + 3) >= 0 && s1 >= 0 && s1 <= 5 && digitAt(text, at + 5) >= 0
  )
}

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
  const read = readTick(key, value, source)
  return typeof read === 'string' ? { ok: false, reason: read } : { ok: true, tick: read }
}

/**
 * {@link decodeTick} for the consumer's hot path: the tick, or the reason it is refused
 * (no result object around either).
 */
export function readTick<S = never>(key: string | undefined | null, value: string | undefined | null, source?: S): DecodedTick<S> | string {
  if (value === undefined || value === null || value === '') return 'empty message value'
  const last = value.length - 1
  if (value.startsWith(TIME_LABEL) && isTimeAt(value, TIME_AT) && value.startsWith(STOCK_LABEL, TIME_AT + 6) && value.charCodeAt(last) === 125) {
    // The name: the key's when the value names it (no new string), else up to the next quote.
    const keyed = key && value.startsWith(key, STOCK_AT) && value.charCodeAt(STOCK_AT + key.length) === QUOTE
    const nameEnd = keyed ? STOCK_AT + key.length : value.indexOf('"', STOCK_AT)
    const priceAt = nameEnd + PRICE_LABEL.length
    const isNull = last - priceAt === 4 && value.startsWith('null', priceAt)
    // Only a whole canonical message is answered here, and only with a tick: anything in
    // doubt (a name that is not a plain stock name, as written with escapes; a key that
    // differs; a price or a tail that is not canonical) gets the full parse below, which
    // decides and words the reason.
    if (nameEnd > STOCK_AT && value.startsWith(PRICE_LABEL, nameEnd) && priceAt < last && (isNull || isCanonicalNumber(value, priceAt, last))) {
      const named = keyed ? key : value.slice(STOCK_AT, nameEnd)
      let stock = acceptedStocks.get(named)
      if (stock === undefined && stockNameProblem(named) === undefined) {
        if (acceptedStocks.size >= MAX_ACCEPTED_STOCKS) acceptedStocks.clear()
        acceptedStocks.set(named, named)
        stock = named
      }
      if (stock !== undefined && (keyed || !key)) {
        const time = value.slice(TIME_AT, TIME_AT + 6)
        if (isNull) return { time, stock, price: null, token: '""', source }
        const price = value.slice(priceAt, last)
        return { time, stock, price: Number(price), token: isOwnToken(price) ? price : undefined, source }
      }
    }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (err) {
    return `value is not JSON: ${(err as Error).message}`
  }
  const result = toTick(parsed)
  if (!result.ok) return result.reason
  if (key && key !== result.tick.stock) return `key ${quote(key)} does not match stock ${quote(result.tick.stock)}`
  return { ...result.tick, source }
}
