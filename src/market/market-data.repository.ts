/**
 * The read side of the market data: stock summaries, pages of a history, OHLC candles and
 * the stream of applied ticks, all read from the pieces `lua/history.lua` describes.
 *
 * Hot reads (the summary list, a stock's newest page) are cached in Redis under a tag: the
 * market generation (`bourse:market:gen`) for the list, the stock's generation (`m.g`)
 * for its page. Every write that changes what they show raises the generation in the same
 * Lua step as the write, and a cached value is served only when its tag equals the
 * generation read with it in one MULTI. A value computed from older data carries the older
 * tag, so a read after a write never returns what was there before it, even when a slow
 * reader stores its result after the write.
 */
import Big from 'big.js'
import type { Redis } from '../platform/redis.ts'
import type { TagSource } from '../platform/tagged-views.ts'
import { bucketOf, type CandleInterval } from './candles.ts'
import { historyScript, TICK_STREAM_KEY } from './stock-history.repository.ts'

/** A stock in the list. */
export interface StockSummary {
  stock: string
  /** The latest price reported (the last priced entry of the history), null without any. */
  price: number | null
  /** The time of that price. */
  time: string | null
  /** The first price reported in the history (the day's first), null without any. */
  first_price: number | null
  /** `price - first_price`, exact in decimal; null without a price. */
  change: number | null
  performance: number | null
  /** Entries in the history (times, priced or not). */
  ticks: number
}

/** One entry of a history: a time and its price, null for "no data reported". */
export interface HistoryEntry {
  time: string
  price: number | null
}

/** A page of a stock's history, newest first. */
export interface HistoryPage {
  stock: string
  performance: number | null
  /** Entries in the whole history. */
  ticks: number
  items: HistoryEntry[]
  /** Position (0-based from the oldest) of the page's oldest entry; the next page ends before it. */
  from: number
  /** The stock's generation the page was read at (see {@link MarketDataRepository.stockTag}). */
  gen: string
}

/** The summaries, and the market generation they were read at. */
export interface SummaryList {
  gen: string
  summaries: StockSummary[]
}

/** A stock's candles, and the stock's generation they were read at (null when it has none yet). */
export interface CandleList {
  gen: string | null
  candles: Candle[]
}

/** An OHLC candle; `volume` is the number of priced ticks in it. */
export interface Candle {
  /** Start of the bucket, `hhmmss`. */
  time: string
  open: number
  high: number
  low: number
  close: number
  volume: number
}

/** One entry of the tick stream. */
export interface TickStreamEntry {
  /** The stream id, `ms-seq`: the SSE event id. */
  id: string
  stock: string
  /** `{"stock":S,"time":[...],"price":[...]}` of the times a batch changed. */
  data: string
}

/** Options of {@link createMarketDataRepository}. */
export interface MarketDataOptions {
  /** How long a cached view stays in Redis when nothing replaces it, in s. @defaultValue 3600 */
  cacheTtlSeconds?: number
}

/** Reads of the market data. */
export interface MarketDataRepository {
  /** Every stock with a history, by name (cached). */
  listSummaries(): Promise<SummaryList>
  /**
   * The `limit` entries before position `before` (the newest when undefined), newest first;
   * undefined for an unknown stock. The newest page is cached.
   */
  readPage(stock: string, before: number | undefined, limit: number): Promise<HistoryPage | undefined>
  /**
   * The candles of `interval` from the bucket holding `from` to the one holding `to`
   * (`hhmmss`), oldest first; undefined for an unknown stock. Reads the stored candles only.
   */
  readCandles(stock: string, interval: CandleInterval, from: string, to: string): Promise<CandleList | undefined>
  /** Entries of the tick stream after `after` (exclusive), oldest first, at most `count`. */
  readStreamAfter(after: string, count: number): Promise<TickStreamEntry[]>
  /** The id of the oldest entry the stream still holds, or undefined when it is empty. */
  oldestStreamId(): Promise<string | undefined>
  /** The id of the newest entry, `0-0` when the stream is empty. */
  newestStreamId(): Promise<string>
  /** Where the market generation lives: raised by every write the summaries show. */
  readonly summariesTag: TagSource
  /** Where a stock's generation lives: raised by every write to its history, candles or performance. */
  stockTag(stock: string): TagSource
}

const scripts = { readSummaries: historyScript('read-summaries'), readPage: historyScript('read-page') } as const
type ScriptRedis = Redis & { [K in keyof typeof scripts]: (...args: Array<string | number>) => Promise<unknown> }

const MARKET_GEN_KEY = 'bourse:market:gen'
const metaKey = (stock: string) => `bourse:h:${stock}:m`
const LIST_CACHE_KEY = 'bourse:cache:stocks'
const pageCacheKey = (stock: string) => `bourse:cache:stock:${stock}`

/** A price token of the history as a number; null for `""` or anything that is not a number. */
function priceOf(token: string | undefined): number | null {
  if (token === undefined || token === '' || token === '""') return null
  const value = Number(token)
  return Number.isFinite(value) ? value : null
}

function performanceOf(fields: string): number | null {
  try {
    const value = (JSON.parse(fields) as { performance?: unknown }).performance
    return typeof value === 'number' ? value : null
  } catch {
    return null
  }
}

/** `tag\n` + value, or undefined when the text is missing or carries another tag. */
function untag(text: string | null | undefined, tag: string): string | undefined {
  if (!text) return undefined
  const at = text.indexOf('\n')
  return at !== -1 && text.slice(0, at) === tag ? text.slice(at + 1) : undefined
}

/** The two string replies of a MULTI, or its first error. */
async function readPair(multi: ReturnType<Redis['multi']>): Promise<[string | null, string | null]> {
  const replies = await multi.exec()
  const [[e1, a] = [], [e2, b] = []] = replies ?? []
  if (!replies || e1 || e2) throw e1 ?? e2 ?? new Error('MULTI aborted')
  return [a as string | null, b as string | null]
}

/** Creates the reads on a Redis connection (scripts are registered on it). */
export function createMarketDataRepository(redis: Redis, options: MarketDataOptions = {}): MarketDataRepository {
  const ttl = options.cacheTtlSeconds ?? 3600
  const r = redis as ScriptRedis
  for (const [name, lua] of Object.entries(scripts)) {
    if (!(name in r)) redis.defineCommand(name, { numberOfKeys: 0, lua })
  }

  const computeSummaries = async (): Promise<SummaryList> => {
    const flat = (await r.readSummaries()) as Array<string | number>
    const gen = String(flat[0])
    const summaries: StockSummary[] = []
    for (let i = 1; i + 5 < flat.length + 1; i += 6) {
      const price = priceOf(String(flat[i + 3]))
      const first = priceOf(String(flat[i + 5]))
      summaries.push({
        stock: String(flat[i]),
        price,
        time: price === null ? null : String(flat[i + 4]).replace(/^"(.*)"$/, '$1'),
        first_price: first,
        change: price === null || first === null ? null : Number(new Big(price).minus(first)),
        performance: performanceOf(String(flat[i + 2])),
        ticks: Number(flat[i + 1]),
      })
    }
    return { gen, summaries }
  }

  return {
    async listSummaries() {
      const [gen, cached] = await readPair(redis.multi().get(MARKET_GEN_KEY).get(LIST_CACHE_KEY))
      const hit = untag(cached, gen ?? '0')
      if (hit !== undefined) return { gen: gen ?? '0', summaries: JSON.parse(hit) as StockSummary[] }
      const fresh = await computeSummaries()
      await redis.set(LIST_CACHE_KEY, `${fresh.gen}\n${JSON.stringify(fresh.summaries)}`, 'EX', ttl)
      return fresh
    },

    async readPage(stock, before, limit) {
      const newest = before === undefined
      if (newest) {
        const [g, cached] = await readPair(redis.multi().hget(metaKey(stock), 'g').hget(pageCacheKey(stock), String(limit)))
        const hit = g === null ? undefined : untag(cached, g)
        if (hit !== undefined) return { ...(JSON.parse(hit) as Omit<HistoryPage, 'gen'>), gen: g! }
      }
      const flat = (await r.readPage(stock, before === undefined ? '' : String(before), limit)) as Array<string | number>
      if (flat.length === 0) return undefined
      const n = Number(flat[0])
      const from = Number(flat[3])
      const count = (flat.length - 4) / 2
      const items: HistoryEntry[] = []
      for (let k = count - 1; k >= 0; k--) {
        items.push({ time: String(flat[4 + k]).replace(/^"(.*)"$/, '$1'), price: priceOf(String(flat[4 + count + k])) })
      }
      const gen = String(flat[1])
      const page = { stock, performance: performanceOf(String(flat[2])), ticks: n, items, from }
      if (newest) {
        await redis
          .multi()
          .hset(pageCacheKey(stock), String(limit), `${gen}\n${JSON.stringify(page)}`)
          .expire(pageCacheKey(stock), ttl)
          .exec()
      }
      return { ...page, gen }
    },

    async readCandles(stock, interval, from, to) {
      const first = bucketOf(from, interval)
      const last = bucketOf(to, interval)
      const hours: string[] = []
      for (let h = Number(from.slice(0, 2)); h <= Number(to.slice(0, 2)); h++) hours.push(String(h).padStart(2, '0'))
      const replies = (await redis
        .multi()
        .sismember('bourse:stocks', stock)
        .hget(metaKey(stock), 'g')
        .hmget(`bourse:h:${stock}:c`, ...hours.map((h) => `${interval}:${h}`))
        .exec()) as Array<[Error | null, unknown]>
      const failed = replies.find(([err]) => err)?.[0]
      if (failed) throw failed
      if (replies[0]?.[1] !== 1) return undefined
      const gen = replies[1]?.[1] as string | null
      const stored = (replies[2]?.[1] ?? []) as Array<string | null>
      const candles: Candle[] = []
      stored.forEach((text, i) => {
        if (!text) return
        for (const entry of text.split(';')) {
          const time = hours[i]! + entry.slice(0, 4)
          if (time < first || time > last) continue
          const [open, high, low, close, volume] = entry.slice(5).split(',')
          candles.push({ time, open: Number(open), high: Number(high), low: Number(low), close: Number(close), volume: Number(volume) })
        }
      })
      return { gen, candles }
    },

    async readStreamAfter(after, count) {
      const entries = (await redis.xrange(TICK_STREAM_KEY, `(${after}`, '+', 'COUNT', count)) as Array<[string, string[]]>
      return entries.map(([id, fields]) => {
        const map = new Map<string, string>()
        for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!)
        return { id, stock: map.get('s') ?? '', data: map.get('d') ?? '' }
      })
    },

    async oldestStreamId() {
      const first = (await redis.xrange(TICK_STREAM_KEY, '-', '+', 'COUNT', 1)) as Array<[string, string[]]>
      return first[0]?.[0]
    },

    async newestStreamId() {
      const last = (await redis.xrevrange(TICK_STREAM_KEY, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>
      return last[0]?.[0] ?? '0-0'
    },

    summariesTag: { key: MARKET_GEN_KEY },
    stockTag: (stock) => ({ key: metaKey(stock), field: 'g' }),
  }
}
