/**
 * The API booted for the BTC orders' tests (the trading test bench: a migrated schema,
 * the test Redis database, users `user1` and `user2` with tokens and an admin token), and
 * the cached quote written straight into Redis as the price poller would.
 */
import type { Redis } from 'ioredis'
import { BTC_QUOTE_KEY } from '../../src/btc/index.ts'
import { openTradingApi, type TradingApi } from './trading.ts'

/**
 * Boots the API with extra environment (such as `BTC_CAP`). The quote is read afresh every
 * turn (`BTC_QUOTE_READ_KEEP_MS=0`) unless `extra` says otherwise: the tests rewrite it
 * between orders.
 */
export async function openBtcApi(extra: Record<string, string> = {}): Promise<TradingApi> {
  return openTradingApi({ BTC_QUOTE_READ_KEEP_MS: '0', ...extra })
}

/** One currency's quote as the poller writes it. */
export interface QuoteEntry {
  price: string
  source?: string
  /** When it was fetched. @defaultValue now */
  fetchedAt?: Date
}

/** Writes the cached quote (`null` deletes it). */
export async function writeQuote(redis: Redis, quote: Partial<Record<'EUR' | 'GBP' | 'USD', QuoteEntry>> | null): Promise<void> {
  if (quote === null) {
    await redis.del(BTC_QUOTE_KEY)
    return
  }
  const value = Object.fromEntries(
    Object.entries(quote).map(([currency, entry]) => [
      currency,
      { price: entry.price, source: entry.source ?? 'coinbase', fetched_at: (entry.fetchedAt ?? new Date()).toISOString() },
    ]),
  )
  await redis.set(BTC_QUOTE_KEY, JSON.stringify(value))
}
