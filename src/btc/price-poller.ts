/**
 * Polls the BTC price providers in their configured order and keeps the quote in Redis
 * (`bourse:btc:quote`). A provider that fails or is slower than its timeout hands over to
 * the next. An answer moving a price by more than the outlier bound against the stored
 * quote is held back unless a later provider confirms it.
 */
import Big from 'big.js'
import type { Redis } from 'ioredis'
import type { Logger } from '../platform/logger.ts'
import { CURRENCIES, type Currency, type PriceProvider, ProviderError, type ProviderName, type ProviderQuote } from './providers.ts'
import { BTC_QUOTE_KEY, parseBtcQuote } from './quote.ts'

/** One currency's price in the stored quote. */
export interface StoredPrice {
  /** Price of 1 BTC, an exact decimal string. */
  price: string
  /** The provider it came from. */
  source: ProviderName
  /** When it was fetched, ISO 8601. */
  fetched_at: string
}

/** The stored quote: `{ EUR: {...}, GBP: {...}, USD: {...} }`. */
export type StoredQuote = Record<Currency, StoredPrice>

/** One provider's record, shown in the heartbeat status. */
export interface ProviderRecord {
  /** When it last answered a valid quote, ISO 8601. */
  lastSuccessAt: string | null
  /** Valid answers. */
  successes: number
  /** Failed calls (errors and bad answers), timeouts not included. */
  failures: number
  /** Calls beyond the timeout. */
  timeouts: number
  /** Answers held back as outliers. */
  outliers: number
  /** The last failure's message. */
  lastError: string | null
}

/** What one poll did. */
export type PollOutcome =
  | { written: true; source: ProviderName; confirmedBy?: ProviderName }
  | { written: false; reason: 'all_failed' | 'outlier_held' }

/** Options of {@link createPricePoller}. */
export interface PricePollerOptions {
  /** The providers, in failover order. */
  providers: readonly PriceProvider[]
  /** Longest one provider call may take, in ms. */
  timeoutMs: number
  /** The outlier bound, a percentage as a decimal string ("10"). */
  outlierPercent: string
  /** The Redis key written. @defaultValue bourse:btc:quote */
  key?: string
  /** The clock. @defaultValue Date.now */
  now?: () => number
}

/** A poller; {@link PricePoller.poll} once, or {@link PricePoller.start} a loop. */
export interface PricePoller {
  /** Asks the providers once and writes the quote when one is accepted. */
  poll(): Promise<PollOutcome>
  /** Polls now and then every `intervalMs` until {@link PricePoller.stop}. */
  start(intervalMs: number): void
  /** Stops the loop and aborts a poll in progress; resolves when it has ended. */
  stop(): Promise<void>
  /** Totals, for the heartbeat and metrics. */
  readonly stats: Readonly<{ polls: number; written: number; failedPolls: number; outliersHeld: number }>
  /** Per-provider records and the last write, for the heartbeat status. */
  status(): { providers: Record<string, ProviderRecord>; lastWrittenAt: string | null }
}

/** Whether every price of `next` is within `percent` of `base` (relative to `base`). */
export function withinBound(next: ProviderQuote, base: Record<Currency, string>, percent: string): boolean {
  return CURRENCIES.every((currency) => {
    const old = new Big(base[currency])
    return new Big(next[currency]).minus(old).abs().times(100).lte(old.times(percent))
  })
}

/** Creates a poller writing to `redis`. */
export function createPricePoller(deps: { redis: Redis; log: Logger }, options: PricePollerOptions): PricePoller {
  const { redis, log } = deps
  const key = options.key ?? BTC_QUOTE_KEY
  const now = options.now ?? Date.now
  if (options.providers.length === 0) throw new RangeError('at least one BTC price provider is needed')
  const records = new Map<ProviderName, ProviderRecord>(
    options.providers.map((p) => [p.name, { lastSuccessAt: null, successes: 0, failures: 0, timeouts: 0, outliers: 0, lastError: null }]),
  )
  const stats = { polls: 0, written: 0, failedPolls: 0, outliersHeld: 0 }
  let lastWrittenAt: string | null = null
  let stopping = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> | undefined

  /** One provider call under its timeout; undefined on failure (recorded and logged). */
  const ask = async (provider: PriceProvider): Promise<ProviderQuote | undefined> => {
    const record = records.get(provider.name)!
    const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs), stopping.signal])
    try {
      const quote = await provider.fetch(signal)
      record.successes++
      record.lastSuccessAt = new Date(now()).toISOString()
      return quote
    } catch (err) {
      const timedOut = (err instanceof ProviderError && err.code === 'timeout') || signal.aborted
      if (timedOut) record.timeouts++
      else record.failures++
      record.lastError = (err as Error).message
      log.warn({ provider: provider.name, err: (err as Error).message, timeout: timedOut }, timedOut ? 'BTC price provider timed out' : 'BTC price provider failed')
      return undefined
    }
  }

  const write = async (quote: ProviderQuote, source: ProviderName) => {
    const fetchedAt = new Date(now()).toISOString()
    const stored = Object.fromEntries(CURRENCIES.map((c) => [c, { price: quote[c], source, fetched_at: fetchedAt }])) as StoredQuote
    await redis.set(key, JSON.stringify(stored))
    stats.written++
    lastWrittenAt = fetchedAt
  }

  const poll = async (): Promise<PollOutcome> => {
    stats.polls++
    // The stored quote, read as the orders read it: a base only when every currency is valid.
    const previous = parseBtcQuote(await redis.get(key))
    const base = CURRENCIES.every((c) => previous[c] !== undefined)
      ? (Object.fromEntries(CURRENCIES.map((c) => [c, previous[c]!.price])) as Record<Currency, string>)
      : undefined
    /** The first outlier answer, waiting for a confirmation. */
    let held: { quote: ProviderQuote; source: ProviderName } | undefined
    for (const provider of options.providers) {
      if (stopping.signal.aborted) break
      const quote = await ask(provider)
      if (!quote) continue
      if (held && withinBound(quote, held.quote, options.outlierPercent)) {
        log.info({ provider: held.source, confirmedBy: provider.name }, 'BTC price move confirmed by a second provider')
        await write(held.quote, held.source)
        return { written: true, source: held.source, confirmedBy: provider.name }
      }
      if (!base || withinBound(quote, base, options.outlierPercent)) {
        await write(quote, provider.name)
        return { written: true, source: provider.name }
      }
      records.get(provider.name)!.outliers++
      log.warn({ provider: provider.name, answer: quote, previous: base, boundPercent: options.outlierPercent }, 'BTC price outlier held back')
      held ??= { quote, source: provider.name }
    }
    if (held) {
      stats.outliersHeld++
      return { written: false, reason: 'outlier_held' }
    }
    stats.failedPolls++
    log.error({ providers: options.providers.map((p) => p.name) }, 'no BTC price provider answered')
    return { written: false, reason: 'all_failed' }
  }

  return {
    poll,
    start(intervalMs) {
      stopping = new AbortController()
      const loop = () => {
        running = poll()
          .catch((err: unknown) => {
            // Redis down: the next poll tries again.
            stats.failedPolls++
            log.error({ err }, 'BTC price poll failed')
          })
          .finally(() => {
            if (!stopping.signal.aborted) timer = setTimeout(loop, intervalMs)
          })
      }
      loop()
    },
    async stop() {
      stopping.abort()
      if (timer) clearTimeout(timer)
      await running
    },
    stats,
    status: () => ({ providers: Object.fromEntries(records), lastWrittenAt }),
  }
}
