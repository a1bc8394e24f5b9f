/**
 * The stock histories in Redis, behind the seed's contract: key `stockN` holds
 * `{ ...fields, time: [...], price: [...], performance }`. Writes go through Lua scripts
 * (see `lua/history.lua` for the layout) so that each batch is atomic and appending a
 * tick costs the same at any history length.
 */
import { readFileSync } from 'node:fs'
import type { Redis } from '../platform/redis.ts'
import { QUARANTINE_LUA } from '../platform/redis-quarantine.ts'
import { FatalError } from '../platform/retry.ts'
import { batchCandleArgs } from './candles.ts'
import { priceToken, type Tick } from './tick.ts'

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
const prelude = `${QUARANTINE_LUA}\n${lua('history')}`

/** The text of script `lua/<name>.lua` with the shared history functions prepended. */
export function historyScript(name: string): string {
  return `${prelude}\n${lua(name)}`
}

/** The Redis Stream of applied ticks (see `lua/history.lua`). */
export const TICK_STREAM_KEY = 'bourse:ticks'

/** Default approximate length cap of {@link TICK_STREAM_KEY}. */
export const DEFAULT_TICK_STREAM_MAX_LEN = 10_000
const scripts = {
  applyTicks: `${prelude}\n${lua('apply-ticks')}`,
  flushHistories: `${prelude}\n${lua('flush')}`,
  seedStock: `${prelude}\n${lua('seed-stock')}`,
  claimChanged: `${prelude}\n${lua('claim-changed')}`,
  completePerformance: `${prelude}\n${lua('complete-performance')}`,
  releaseClaims: `${prelude}\n${lua('release-claims')}`,
  latestPrice: `${prelude}\n${lua('latest-price')}`,
} as const

type ScriptName = keyof typeof scripts
type ScriptRedis = Redis & { [K in ScriptName]: (...args: Array<string | number>) => Promise<unknown> }

/** The first and last offset of a partition's messages in a batch. */
export interface OffsetRange {
  first: bigint
  last: bigint
}

/** Where a tick came from, for exactly-once: the Kafka partition and offset. */
export interface TickSource {
  partition: number
  offset: bigint
}

/**
 * A tick to apply, optionally with its Kafka position, and with its price's JSON text
 * (`token`) when the caller has it exactly as `priceToken` would write it.
 */
export type SourcedTick = Tick & { source?: TickSource | undefined; token?: string | undefined }

/** What one batch did. */
export interface ApplyResult {
  /** New times appended to a history. */
  appended: number
  /** Times already present whose price changed. */
  updated: number
  /** Times already present with the same price (a replayed file). */
  unchanged: number
  /** Ticks skipped because their offset was applied before (exactly-once). */
  replayed: number
  /** Stock keys whose old value was not a contract JSON and was moved aside. */
  quarantined: number
}

/** A stock claimed for a performance computation. */
export interface ClaimedStock {
  stock: string
  version: number
}

/** Options for {@link createStockHistoryRepository}. */
export interface StockHistoryOptions {
  /**
   * Longest the contract JSON of a stock may lag its history while ticks stream in; 0
   * rebuilds it after every batch. {@link StockHistoryRepository.flush} rebuilds now.
   * @defaultValue 1000
   */
  materializeIntervalMs?: number
  /**
   * Approximate cap of the tick stream `bourse:ticks` (`XADD MAXLEN ~`): one entry per stock
   * and applied batch; older entries are trimmed, so a client resuming from one of them
   * resumes from the oldest entry kept.
   * @defaultValue 10000
   */
  tickStreamMaxLen?: number
}

/** Exactly-once bookkeeping of {@link StockHistoryRepository.applyTicks}. */
export interface OffsetsOptions {
  /** Consumer group; with the topic, names the hash of applied offsets. */
  group: string
  topic: string
  /** Positions of messages that carry no tick (sent to the dead-letter topic): recorded too. */
  consumedOnly?: readonly TickSource[]
  /**
   * Pipelining: the last offset per partition this caller submitted before this batch,
   * and the promise of that previous batch. The batch is sent at once; Redis refuses it
   * while a partition's stored offset is behind `submittedBefore` (the previous batch
   * failed), and it is sent again once `previous` has settled. If `previous` rejects,
   * so does this call.
   */
  submittedBefore?: ReadonlyMap<number, bigint>
  previous?: Promise<unknown>
  /**
   * The first and last offset per partition of the ticks and `consumedOnly` together, when
   * the caller has them already (a consumer's batch): the ticks are then not read for them.
   */
  ranges?: ReadonlyMap<number, OffsetRange>
  /**
   * The group's offsets record must exist already (the caller found it at its start, or
   * applied batches since): a missing one means Redis lost it, and nothing is written.
   * @defaultValue false: the first batch of a new group creates it
   */
  recordExpected?: boolean
}

/**
 * Redis's record of applied offsets is behind what the caller knows was applied: Redis
 * lost writes. Nothing of the batch was written. `stored` is undefined when the record (or
 * the partition's entry) is gone altogether, the stored offset when Redis went back to
 * an older state of its own (restarted from a save older than its last writes).
 */
export class AppliedOffsetsLostError extends FatalError {
  override name = 'AppliedOffsetsLostError'
  /** The partition whose offset went back; undefined when the whole record is gone. */
  readonly partition: number | undefined
  /** The offset Redis holds now; undefined when it holds none. */
  readonly stored: bigint | undefined
  constructor(topic: string, group: string, partition?: number, stored?: bigint, expected?: bigint) {
    const where = partition === undefined ? topic : `${topic}/${partition}`
    super(
      stored === undefined
        ? `Redis holds no applied offset of group ${group} for ${where} any more` +
            (expected === undefined ? '' : `, though offsets up to ${expected} were applied`) +
            ': Redis lost its data (flushed, or restarted without persistence)'
        : `the applied offset of group ${group} for ${where} in Redis went back to ${stored}, below ${expected} ` +
            'already applied: Redis restarted from a save older than its last writes',
    )
    this.partition = partition
    this.stored = stored
  }
}

/** One of Bourse's own keys holds a value of another type: nothing of the batch was written. */
export class HistoryKeyTypeError extends FatalError {
  override name = 'HistoryKeyTypeError'
}

/** Key of the hash of applied offsets for a consumer group on a topic. */
export function offsetsKey(group: string, topic: string): string {
  return `bourse:offsets:${group}:${topic}`
}

/** Stock histories in Redis. */
export interface StockHistoryRepository {
  /**
   * Applies ticks in order. With `offsets` (a consumer group and topic), ticks carrying a
   * source at or below the group's stored offset are skipped, and the new offsets are
   * stored in the same atomic step. `consumedOnly` are positions of messages that carry
   * no tick (sent to the dead-letter topic): their offsets are recorded too.
   */
  applyTicks(ticks: readonly SourcedTick[], offsets?: OffsetsOptions): Promise<ApplyResult>
  /** Rebuilds the contract JSON of every stock changed since its last rebuild. */
  flush(): Promise<number>
  /**
   * Replaces a stock's whole history by a contract JSON (a fixture entry), given as JSON
   * text or as a value. From text, every value is stored as written (`999999999999999`
   * and `12345678901234567` stay so, `[]` stays `[]`); only the whitespace between
   * tokens and the order of the fields change (`time` and `price` come last). A value
   * under the key that is not a stock's contract JSON is moved to
   * `bourse:quarantine:<stock>` (or `:<stock>:2`, ... when taken), never overwritten:
   * resolves to the name it was moved to, or undefined.
   */
  seedStock(stock: string, value: Record<string, unknown> | string): Promise<string | undefined>
  /** The contract JSON of a stock as `GET stockN` returns it, parsed; undefined if absent. */
  readStock(stock: string): Promise<Record<string, unknown> | undefined>
  /** The price list of a stock, read from the history (always current), with its version. */
  readPrices(stock: string): Promise<{ prices: Array<number | ''>; version: number }>
  /**
   * The last non-empty entry of each stock's price list (its latest price), in one Redis
   * call, one answer per stock in order: `undefined` for an unknown stock, `null` for a
   * stock that has no price yet. Costs the same whatever the histories' length.
   */
  readLatestPrices(stocks: readonly string[]): Promise<Array<number | null | undefined>>
  /** Every stock with a history. */
  listStocks(): Promise<string[]>
  /** The last applied offset per partition for a group and topic. */
  appliedOffsets(group: string, topic: string): Promise<Map<number, bigint>>
  /** Deletes the applied offsets of a group and topic (a rebuild replays the topic); true when there were some. */
  clearAppliedOffsets(group: string, topic: string): Promise<boolean>
  /** Claims up to `limit` changed stocks for `owner`, under a lease of `leaseMs`. */
  claimChanged(owner: string, leaseMs: number, limit: number): Promise<ClaimedStock[]>
  /**
   * Stores a performance computed from the history at `version` (as {@link readPrices}
   * returned it) if `owner` still holds the lease; false otherwise.
   */
  completePerformance(stock: string, owner: string, performance: number, version: number): Promise<boolean>
  /** Gives back leases `owner` holds on `stocks` without computing them; resolves to the number released. */
  releaseClaims(owner: string, stocks: readonly string[]): Promise<number>
}

/**
 * The arguments of `apply-ticks.lua`: the partitions' offset ranges, then per stock its
 * ticks in order, with the text to append ready-made so that the usual case (all times
 * later than the stock's latest) costs Redis a few calls per stock.
 */
function buildApplyArgs(
  ticks: readonly SourcedTick[],
  consumedOnly: readonly TickSource[],
  offsetsKeyName: string,
  interval: string,
  submittedBefore: ReadonlyMap<number, bigint>,
  recordExpected: boolean,
  streamMaxLen: string,
  knownRanges: ReadonlyMap<number, OffsetRange> | undefined,
): string[] {
  const ranges = new Map<number, OffsetRange>(knownRanges)
  const extend = (source: TickSource | undefined) => {
    if (!source) {
      if (offsetsKeyName) throw new Error('applyTicks with offsets needs every tick to carry its source')
      return
    }
    const range = ranges.get(source.partition)
    if (!range) ranges.set(source.partition, { first: source.offset, last: source.offset })
    else if (source.offset > range.last) range.last = source.offset
    else if (source.offset < range.first) range.first = source.offset
  }
  const byStock = new Map<string, { times: string[]; tokens: string[]; prices: Array<number | null> }>()
  for (const tick of ticks) {
    if (!knownRanges) extend(tick.source)
    let group = byStock.get(tick.stock)
    if (!group) byStock.set(tick.stock, (group = { times: [], tokens: [], prices: [] }))
    group.times.push(tick.time)
    group.tokens.push(tick.token ?? priceToken(tick.price))
    group.prices.push(tick.price)
  }
  if (!knownRanges) for (const source of consumedOnly) extend(source)
  const args: string[] = [offsetsKeyName, interval, String(offsetsKeyName ? ranges.size : 0), recordExpected ? '1' : '', streamMaxLen]
  if (offsetsKeyName) {
    for (const [partition, range] of ranges) {
      const before = submittedBefore.get(partition)
      args.push(String(partition), range.first.toString(), range.last.toString(), before?.toString() ?? '')
    }
  }
  for (const [stock, { times, tokens, prices }] of byStock) {
    let increasing = true
    let min = times[0]!
    let max = min
    for (let i = 1; i < times.length; i++) {
      const time = times[i]!
      if (time <= times[i - 1]!) increasing = false
      if (time < min) min = time
      if (time > max) max = time
    }
    args.push(
      stock,
      String(times.length),
      increasing ? '1' : '0',
      min,
      max,
      `"${times.join('","')}"`,
      tokens.join(','),
    )
    const candles = increasing ? batchCandleArgs(times, tokens, prices) : []
    args.push(String(candles.length / 2), ...candles)
  }
  return args
}

const { rawJSON } = JSON as unknown as { rawJSON(text: string): unknown }

/**
 * Parses JSON keeping each number's and string's text as written (`JSON.rawJSON`, which
 * `JSON.stringify` writes back verbatim), so that `12345678901234567` does not become
 * `12345678901234568`.
 */
function parseKeepingText(json: string): Record<string, unknown> {
  return JSON.parse(json, (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'object' && value !== null ? value : rawJSON(context?.source ?? JSON.stringify(value)),
  ) as Record<string, unknown>
}

/**
 * The arguments of `seed-stock.lua`: the stock, its other fields as a JSON object, its
 * time and price texts, its latest hhmmss time, then time and price token pairs for the
 * index. Built here, so that no value goes through Lua's cjson.
 */
function buildSeedArgs(stock: string, value: Record<string, unknown> | string): string[] {
  const { time = [], price = [], performance = 0, ...fields } = typeof value === 'string' ? parseKeepingText(value) : value
  if (!Array.isArray(time) || !Array.isArray(price) || time.length !== price.length) {
    throw new TypeError(`${stock}: time and price must be lists of equal length`)
  }
  const times = time.map((t: unknown) => JSON.parse(JSON.stringify(t)) as unknown)
  if (!times.every((t): t is string => typeof t === 'string' && !/[",\\]/.test(t))) {
    throw new TypeError(`${stock}: times must be strings without commas, quotes or backslashes`)
  }
  const tokens = price.map((p: unknown) => JSON.stringify(p))
  let latest = ''
  const index: string[] = []
  times.forEach((t, i) => {
    if (/^\d{6}$/.test(t) && t > latest) latest = t
    index.push(t, tokens[i]!)
  })
  const timeText = times.map((t) => JSON.stringify(t)).join(',')
  // `performance` last: complete-performance.lua replaces it without touching the rest.
  return [stock, JSON.stringify({ ...fields, performance }), timeText, tokens.join(','), latest, ...index]
}

/** Creates the repository on a Redis connection (scripts are registered on it). */
export function createStockHistoryRepository(
  redis: Redis,
  options: StockHistoryOptions = {},
): StockHistoryRepository {
  const interval = String(options.materializeIntervalMs ?? 1000)
  const streamMaxLen = String(options.tickStreamMaxLen ?? DEFAULT_TICK_STREAM_MAX_LEN)
  const r = redis as ScriptRedis
  for (const [name, lua] of Object.entries(scripts)) {
    if (!(name in r)) redis.defineCommand(name, { numberOfKeys: 0, lua })
  }

  const readLatestPrices = async (stocks: readonly string[]): Promise<Array<number | null | undefined>> => {
    if (stocks.length === 0) return []
    const flat = (await r.latestPrice(...stocks)) as Array<number | string>
    return stocks.map((_, i) => {
      if (flat[2 * i] === 0) return undefined
      const value = flat[2 * i + 1] === '' ? NaN : Number(flat[2 * i + 1])
      return Number.isFinite(value) ? value : null
    })
  }

  return {
    async applyTicks(ticks, offsets) {
      const key = offsets ? offsetsKey(offsets.group, offsets.topic) : ''
      const submitted = new Map(offsets?.submittedBefore ?? [])
      let pending = ticks
      let consumed = offsets?.consumedOnly ?? []
      let replayed = 0
      let previous = offsets?.previous
      let known = offsets?.ranges
      for (;;) {
        // Sent before waiting for the previous batch: Redis runs them in order anyway.
        const args = buildApplyArgs(pending, consumed, key, interval, submitted, offsets?.recordExpected ?? false, streamMaxLen, known)
        const reply = (r.applyTicks(...args) as Promise<Array<number | string>>).catch((err: unknown) => {
          const text = err instanceof Error ? err.message : ''
          const at = text.indexOf('BOURSE-KEYTYPE ')
          if (at === -1) throw err
          throw new HistoryKeyTypeError(
            `${text.slice(at + 'BOURSE-KEYTYPE '.length).split(' script:')[0]}, where Bourse keeps a history: ` +
              'nothing of the batch was written; rename or delete that key and start again',
            { cause: err },
          )
        })
        const waited = previous !== undefined
        if (previous) {
          reply.catch(() => {})
          await previous
          previous = undefined
        }
        const answer = await reply
        if (answer[0] === -3) {
          // The previous batch may have written the group's first record after this call
          // ran (a new group's batches on other partitions): ask again once it is applied.
          if (waited) continue
          throw new AppliedOffsetsLostError(offsets!.topic, offsets!.group)
        }
        if (answer[0] !== -1 && answer[0] !== -2) {
          const [appended = 0, updated = 0, unchanged = 0, quarantined = 0] = answer as number[]
          return { appended, updated, unchanged, replayed, quarantined }
        }
        const partition = Number(answer[1])
        const stored = BigInt(answer[2]!)
        if (answer[0] === -2) {
          // The previous batch had not been applied when this one ran; it has settled now.
          if (waited) continue
          // Applied before and now gone or lower: Redis lost writes. Retrying cannot help.
          // (The script answers -1 for a partition it has no entry for.)
          throw new AppliedOffsetsLostError(
            offsets!.topic,
            offsets!.group,
            partition,
            stored < 0n ? undefined : stored,
            submitted.get(partition),
          )
        }
        // Part of the batch was applied before (a replay): drop it and try again. The
        // script wrote nothing, and checks again, so a concurrent writer cannot slip in.
        const fresh = (source?: TickSource) => !source || source.partition !== partition || source.offset > stored
        const before = pending.length
        pending = pending.filter((tick) => fresh(tick.source))
        consumed = consumed.filter((source) => fresh(source))
        replayed += before - pending.length
        submitted.set(partition, stored)
        // The ranges given were those of the whole batch: read them from what is left.
        known = undefined
      }
    },
    async flush() {
      return (await r.flushHistories()) as number
    },
    async seedStock(stock, value) {
      const movedTo = (await r.seedStock(...buildSeedArgs(stock, value))) as string
      return movedTo === '' ? undefined : movedTo
    },
    async readStock(stock) {
      const raw = await redis.get(stock)
      return raw === null ? undefined : (JSON.parse(raw) as Record<string, unknown>)
    },
    async readPrices(stock) {
      // One MULTI, so the version describes exactly these prices.
      const replies = await redis.multi().get(`bourse:h:${stock}:p`).hget(`bourse:h:${stock}:m`, 'v').exec()
      const [[pricesError, raw] = [], [versionError, version] = []] = replies ?? []
      if (!replies || pricesError || versionError) throw pricesError ?? versionError ?? new Error('MULTI aborted')
      const text = raw as string | null
      return {
        prices: text === null || text === '' ? [] : (JSON.parse(`[${text}]`) as Array<number | ''>),
        version: Number(version ?? 0),
      }
    },
    readLatestPrices,
    async listStocks() {
      return (await redis.smembers('bourse:stocks')).sort()
    },
    async appliedOffsets(group, topic) {
      const raw = await redis.hgetall(offsetsKey(group, topic))
      return new Map(Object.entries(raw).map(([p, o]) => [Number(p), BigInt(o)]))
    },
    async clearAppliedOffsets(group, topic) {
      return (await redis.del(offsetsKey(group, topic))) > 0
    },
    async claimChanged(owner, leaseMs, limit) {
      const flat = (await r.claimChanged(owner, leaseMs, limit)) as string[]
      const claimed: ClaimedStock[] = []
      for (let i = 0; i + 1 < flat.length; i += 2) claimed.push({ stock: flat[i]!, version: Number(flat[i + 1]) })
      return claimed
    },
    async completePerformance(stock, owner, performance, version) {
      return (await r.completePerformance(stock, owner, JSON.stringify(performance), version)) === 1
    },
    async releaseClaims(owner, stocks) {
      if (stocks.length === 0) return 0
      return (await r.releaseClaims(owner, ...stocks)) as number
    },
  }
}
