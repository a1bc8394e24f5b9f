/**
 * A price tick: one row of the seed's CSV (`Time,Stock,Price`). The same shape travels
 * through Kafka and into the Redis contract.
 */
import { quote } from '../platform/quote.ts'

/** One price observation. `price` is null when the source reported no data. */
export interface Tick {
  /** `hhmmss`, as in the CSV's `Time` column. */
  time: string
  /** Stock key, as in the CSV's `Stock` column (`stock1`, ...). */
  stock: string
  /** Price, or null for "no data reported". */
  price: number | null
}

/** Validation outcome: a tick, or the reason it is not one. */
export type TickResult = { ok: true; tick: Tick } | { ok: false; reason: string }

const TIME = /^([01]\d|2[0-3])[0-5]\d[0-5]\d$/
const STOCK = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/
const USER_KEY = /^user\d+$/
const PRICE = /^\d{1,15}(\.\d{1,10})?$/

/** Why a stock name is not acceptable, or undefined when it is. */
export function stockNameProblem(stock: string): string | undefined {
  if (!STOCK.test(stock)) {
    return `stock ${quote(stock)} must be a letter followed by up to 63 letters, digits, "_" or "-"`
  }
  if (USER_KEY.test(stock)) return `stock ${quote(stock)} would overwrite a user key`
  return undefined
}

/** Why a time is not acceptable, or undefined. */
export function timeProblem(time: string): string | undefined {
  return TIME.test(time) ? undefined : `time ${quote(time)} is not hhmmss (000000 to 235959)`
}

/** Parses a price as text: empty means "no data"; otherwise a non-negative decimal. */
export function parsePriceText(text: string): { ok: true; price: number | null } | { ok: false; reason: string } {
  if (text === '') return { ok: true, price: null }
  if (!PRICE.test(text)) return { ok: false, reason: `price ${quote(text)} is not a non-negative number` }
  return { ok: true, price: Number(text) }
}

/** Validates an unknown value (for example a decoded Kafka message) as a tick. */
export function toTick(value: unknown): TickResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'tick must be a JSON object with time, stock and price' }
  }
  const { time, stock, price, ...extra } = value as Record<string, unknown>
  const extraKeys = Object.keys(extra)
  if (extraKeys.length > 0) return { ok: false, reason: `unexpected field ${quote(extraKeys[0]!)}` }
  if (typeof time !== 'string') return { ok: false, reason: 'time must be a string hhmmss' }
  if (typeof stock !== 'string') return { ok: false, reason: 'stock must be a string' }
  const problem = timeProblem(time) ?? stockNameProblem(stock)
  if (problem) return { ok: false, reason: problem }
  if (price !== null && (typeof price !== 'number' || !Number.isFinite(price) || price < 0)) {
    return { ok: false, reason: 'price must be a non-negative number or null' }
  }
  return { ok: true, tick: { time, stock, price } }
}

/** The JSON text a tick's price takes in the Redis contract: a number, or `""`. */
export function priceToken(price: number | null): string {
  // String() of a finite number is its JSON text.
  return price === null ? '""' : String(price)
}
