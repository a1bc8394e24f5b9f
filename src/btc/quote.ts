/**
 * The cached BTC quote the price poller keeps in Redis (`bourse:btc:quote`), as orders read
 * it: `{ EUR: { price, source, fetched_at }, GBP: ..., USD: ... }` with exact decimal
 * strings. Anything missing or garbled counts as no quote for that currency: an order is
 * never priced on a value we cannot vouch for.
 */
import type { Redis } from '../platform/redis.ts'
import { CURRENCIES, type Currency } from './providers.ts'

/** The Redis key of the cached quote. */
export const BTC_QUOTE_KEY = 'bourse:btc:quote'

/** The currencies BTC is quoted and bought in: the ones the providers are asked for. */
export const BTC_CURRENCIES = CURRENCIES
/** One of {@link BTC_CURRENCIES}. */
export type BtcCurrency = Currency

/** The price of 1 BTC in one currency. */
export interface CurrencyQuote {
  /** A positive plain decimal, as the provider gave it. */
  price: string
  /** The provider it came from. */
  source: string
  /** When it was fetched. */
  fetchedAt: Date
}

/** The valid quotes of the cached value, by currency (a currency absent when missing or garbled). */
export type BtcQuote = Partial<Record<BtcCurrency, CurrencyQuote>>

const PRICE = /^(?:0|[1-9]\d{0,15})(?:\.\d{1,20})?$/
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/

/** One currency's entry, or undefined when it is not a valid quote. */
function currencyQuote(value: unknown): CurrencyQuote | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { price, source, fetched_at: fetchedAt } = value as Record<string, unknown>
  if (typeof price !== 'string' || !PRICE.test(price) || /^0(?:\.0*)?$/.test(price)) return undefined
  if (typeof source !== 'string' || source.length === 0 || source.length > 100) return undefined
  if (typeof fetchedAt !== 'string' || !ISO_INSTANT.test(fetchedAt)) return undefined
  const date = new Date(fetchedAt)
  if (Number.isNaN(date.getTime())) return undefined
  return { price, source, fetchedAt: date }
}

/** Parses the cached value (JSON text or null); whatever is not valid is left out. */
export function parseBtcQuote(text: string | null): BtcQuote {
  if (text === null) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return {}
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {}
  const quote: BtcQuote = {}
  for (const currency of BTC_CURRENCIES) {
    const entry = currencyQuote((parsed as Record<string, unknown>)[currency])
    if (entry) quote[currency] = entry
  }
  return quote
}

/** Reads the cached quote from Redis. */
export async function readBtcQuote(redis: Redis): Promise<BtcQuote> {
  return parseBtcQuote(await redis.get(BTC_QUOTE_KEY))
}
