/**
 * The candles the apply script maintains, against an independent recomputation from the
 * raw history: random ticks with out-of-order times, repeated times whose price changes,
 * empty prices and replayed offsets; then the seed's fixture and CSV. Also the tick
 * stream's entries, the summaries and the pages of a history.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { CANDLE_INTERVALS, type CandleInterval } from '../../src/market/candles.ts'
import { type Candle, createMarketDataRepository, type MarketDataRepository, type StockSummary } from '../../src/market/market-data.repository.ts'
import { readRedisFixture } from '../../src/market/redis-fixture.ts'
import { createStockHistoryRepository, type SourcedTick, type StockHistoryRepository } from '../../src/market/stock-history.repository.ts'
import type { Tick } from '../../src/market/tick.ts'
import { closeTestRedis, openTestRedis } from '../helpers/infra.ts'
import { applyToModel, type ModelStock, originalFixtures, readTicks } from '../helpers/market.ts'

let redis: Redis
let history: StockHistoryRepository
let market: MarketDataRepository

before(async () => {
  redis = await openTestRedis()
  history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
  market = createMarketDataRepository(redis)
})
beforeEach(() => redis.flushdb())
after(() => closeTestRedis(redis))

/** hhmmss of second `s` of the day. */
const hhmmss = (s: number) => [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join('')

/** The candles of a stock, without the generation they were read at. */
const candlesOf = async (...args: Parameters<MarketDataRepository['readCandles']>) => (await market.readCandles(...args))?.candles

/** Candles recomputed from a history's (time, price) list, written independently of the code under test. */
function expectedCandles(json: ModelStock['json'], interval: CandleInterval): Candle[] {
  const width = interval === '1m' ? 60 : interval === '5m' ? 300 : 3600
  const seconds = (t: string) => Number(t.slice(0, 2)) * 3600 + Number(t.slice(2, 4)) * 60 + Number(t.slice(4, 6))
  const byTime = new Map<string, number>()
  json.time.forEach((t, i) => {
    const p = json.price[i]
    if (/^\d{6}$/.test(t) && typeof p === 'number') byTime.set(t, p)
    else byTime.delete(t)
  })
  const buckets = new Map<number, Array<[string, number]>>()
  for (const [t, p] of byTime) {
    const start = Math.floor(seconds(t) / width) * width
    const list = buckets.get(start) ?? []
    list.push([t, p])
    buckets.set(start, list)
  }
  const hhmmss = (s: number) =>
    [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join('')
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([start, list]) => {
      list.sort(([a], [b]) => (a < b ? -1 : 1))
      const prices = list.map(([, p]) => p)
      return {
        time: hhmmss(start),
        open: prices[0]!,
        high: Math.max(...prices),
        low: Math.min(...prices),
        close: prices.at(-1)!,
        volume: prices.length,
      }
    })
}

async function assertCandlesExact(model: Map<string, ModelStock>, label: string): Promise<void> {
  for (const [stock, { json }] of model) {
    for (const interval of CANDLE_INTERVALS) {
      const stored = await candlesOf(stock, interval, '000000', '235959')
      assert.deepEqual(stored, expectedCandles(json, interval), `${label}: ${stock} ${interval}`)
    }
  }
}

const timeArb = fc
  .tuple(fc.integer({ min: 9, max: 10 }), fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 59 }))
  .map(([h, m, s]) => [h, m * 5 + (s % 5), s].map((n) => String(n).padStart(2, '0')).join(''))
const priceArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 200_000 }).map((n) => n / 100) },
)
const tickArb = fc.record({ stock: fc.constantFrom('s1', 's2'), time: timeArb, price: priceArb })

describe('candles', () => {
  test('equal a recomputation from the history after any sequence of batches, replays included', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            ticks: fc.array(tickArb, { minLength: 1, maxLength: 40 }),
            // An in-order batch takes the append path; a replay resends the batch before.
            sorted: fc.boolean(),
            replay: fc.boolean(),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (batches) => {
          await redis.flushdb()
          const model = new Map<string, ModelStock>()
          let offset = 0n
          let previous: SourcedTick[] = []
          for (const batch of batches) {
            let ticks: Tick[] = batch.ticks
            if (batch.sorted) {
              // Strictly later than anything applied, in order: the cheap path.
              const latest = new Map<string, string>()
              for (const [s, { json }] of model) latest.set(s, json.time.reduce((a, b) => (b > a ? b : a), ''))
              ticks = [...ticks]
                .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0))
                .filter((t, i, all) => (latest.get(t.stock) ?? '') < t.time && all.findIndex((u) => u.stock === t.stock && u.time === t.time) === i)
            }
            const sourced: SourcedTick[] = ticks.map((t) => ({ ...t, source: { partition: 0, offset: offset++ } }))
            if (batch.replay && previous.length > 0) {
              const result = await history.applyTicks([...previous, ...sourced], { group: 'g', topic: 't' })
              assert.equal(result.replayed, previous.length)
            } else {
              await history.applyTicks(sourced, { group: 'g', topic: 't' })
            }
            applyToModel(model, ticks)
            previous = sourced
          }
          await assertCandlesExact(model, 'random')
        },
      ),
      { numRuns: 60, seed: 20261207 },
    )
  })

  test('a changed price recomputes its buckets: high, low, open, close and an emptied price', async () => {
    const model = new Map<string, ModelStock>()
    const apply = async (ticks: Tick[]) => {
      await history.applyTicks(ticks)
      applyToModel(model, ticks)
      await assertCandlesExact(model, JSON.stringify(ticks))
    }
    await apply([
      { stock: 's1', time: '090000', price: 10 },
      { stock: 's1', time: '090010', price: 30 },
      { stock: 's1', time: '090020', price: 20 },
    ])
    assert.deepEqual(await candlesOf('s1', '1m', '090000', '090000'), [
      { time: '090000', open: 10, high: 30, low: 10, close: 20, volume: 3 },
    ])
    await apply([{ stock: 's1', time: '090010', price: 15 }]) // the high goes
    await apply([{ stock: 's1', time: '090000', price: 5 }]) // a new open and low
    await apply([{ stock: 's1', time: '090020', price: null }]) // the close emptied
    await apply([{ stock: 's1', time: '085959', price: 7 }]) // earlier than all: another hour
    await apply([{ stock: 's1', time: '090005', price: 50 }]) // out of order inside a bucket
    assert.deepEqual(await candlesOf('s1', '1h', '080000', '095959'), [
      { time: '080000', open: 7, high: 7, low: 7, close: 7, volume: 1 },
      { time: '090000', open: 5, high: 50, low: 5, close: 15, volume: 3 },
    ])
    await apply([{ stock: 's1', time: '085959', price: null }])
    assert.deepEqual(await candlesOf('s1', '1h', '080000', '085959'), [], 'an emptied bucket has no candle')
  })

  test('the fixture then the CSV: candles of the CSV ticks, none of the fixture times that are not hhmmss', async () => {
    const fixture = await readRedisFixture(originalFixtures.redis)
    const model = new Map<string, ModelStock>()
    for (const entry of fixture.entries) {
      if (entry.kind !== 'stock') continue
      await history.seedStock(entry.key, entry.value)
      model.set(entry.key, { json: structuredClone(entry.value) as ModelStock['json'], changes: 0 })
    }
    const ticks = readTicks(originalFixtures.prices)
    await history.applyTicks(ticks)
    applyToModel(model, ticks)
    await assertCandlesExact(model, 'fixture')
    const hours = await candlesOf('stock1', '1h', '000000', '235959')
    assert.equal(hours?.reduce((sum, c) => sum + c.volume, 0), ticks.filter((t) => t.stock === 'stock1' && t.price !== null).length)
  })

  test('a seeded history gets its candles at once; reseeding replaces them', async () => {
    await history.seedStock('s1', { time: ['090000', '090100', '09:02'], price: [3, 4, 5], performance: 0 })
    assert.deepEqual(await candlesOf('s1', '5m', '090000', '090500'), [
      { time: '090000', open: 3, high: 4, low: 3, close: 4, volume: 2 },
    ])
    await history.seedStock('s1', { time: ['100000'], price: [''], performance: 0 })
    assert.deepEqual(await candlesOf('s1', '5m', '000000', '235959'), [])
  })

  test('an unknown stock has no candles (undefined)', async () => {
    assert.equal(await candlesOf('nope', '1m', '000000', '235959'), undefined)
  })
})

describe('the tick stream', () => {
  test('one entry per stock and batch with the times that changed; a replay adds none', async () => {
    const at = (offset: bigint, tick: Tick): SourcedTick => ({ ...tick, source: { partition: 0, offset } })
    await history.applyTicks(
      [at(0n, { stock: 's1', time: '090000', price: 1 }), at(1n, { stock: 's2', time: '090000', price: null })],
      { group: 'g', topic: 't' },
    )
    await history.applyTicks(
      [
        at(0n, { stock: 's1', time: '090000', price: 1 }),
        at(1n, { stock: 's2', time: '090000', price: null }),
        at(2n, { stock: 's1', time: '090000', price: 1 }), // unchanged: not an event
        at(3n, { stock: 's2', time: '085900', price: 2.5 }),
      ],
      { group: 'g', topic: 't' },
    )
    const entries = await market.readStreamAfter('0-0', 100)
    assert.deepEqual(
      entries.map((e) => [e.stock, JSON.parse(e.data)]),
      [
        ['s1', { stock: 's1', time: ['090000'], price: [1] }],
        ['s2', { stock: 's2', time: ['090000'], price: [''] }],
        ['s2', { stock: 's2', time: ['085900'], price: [2.5] }],
      ],
    )
    assert.equal(await market.newestStreamId(), entries.at(-1)!.id)
    assert.equal(await market.oldestStreamId(), entries[0]!.id)
  })

  test('the stream is capped near its configured length', async () => {
    const capped = createStockHistoryRepository(redis, { materializeIntervalMs: 0, tickStreamMaxLen: 100 })
    for (let i = 0; i < 400; i++) {
      await capped.applyTicks([{ stock: 's1', time: String(90000 + i).padStart(6, '0').replace(/(\d{4})(\d{2})/, (_, a: string, b: string) => a + String(Number(b) % 60).padStart(2, '0')), price: i }])
    }
    const length = await redis.xlen('bourse:ticks')
    assert.ok(length >= 100 && length < 400, `stream length ${length} is trimmed near 100`)
  })
})

describe('summaries and pages', () => {
  test('the latest and first prices, the change, the tick count; the newest page first', async () => {
    await history.seedStock('stock1', { id: 1, time: ['09:00', '09:01'], price: [1000, ''], performance: 0 })
    await history.applyTicks([
      { stock: 'stock1', time: '090031', price: 1041.1 },
      { stock: 'stock1', time: '090041', price: null },
      { stock: 'stock2', time: '090010', price: null },
    ])
    assert.deepEqual((await market.listSummaries()).summaries, [
      { stock: 'stock1', price: 1041.1, time: '090031', first_price: 1000, change: 41.1, performance: 0, ticks: 4 },
      { stock: 'stock2', price: null, time: null, first_price: null, change: null, performance: 0, ticks: 1 },
    ])
    const { gen, ...first } = (await market.readPage('stock1', undefined, 3))!
    assert.equal(gen, await redis.hget('bourse:h:stock1:m', 'g'), "the page's generation is the stock's")
    assert.deepEqual(first, {
      stock: 'stock1',
      performance: 0,
      ticks: 4,
      from: 1,
      items: [
        { time: '090041', price: null },
        { time: '090031', price: 1041.1 },
        { time: '09:01', price: null },
      ],
    })
    assert.deepEqual((await market.readPage('stock1', 1, 3))?.items, [{ time: '09:00', price: 1000 }])
    assert.equal(await market.readPage('nope', undefined, 3), undefined)
  })

  test('every read carries the generation it was read at, and generations never repeat, also after Redis is emptied or goes back', async () => {
    await history.applyTicks([{ stock: 's1', time: '090000', price: 10 }])
    const first = await market.listSummaries()
    const firstCandles = (await market.readCandles('s1', '1m', '000000', '235959'))!
    assert.equal(first.gen, await redis.get('bourse:market:gen'))
    assert.equal(firstCandles.gen, await redis.hget('bourse:h:s1:m', 'g'))
    await history.applyTicks([{ stock: 's2', time: '090000', price: 20 }])
    const second = await market.listSummaries()
    assert.ok(BigInt(second.gen) > BigInt(first.gen), 'a write raises the market generation')
    assert.equal((await market.readCandles('s1', '1m', '000000', '235959'))!.gen, firstCandles.gen, "another stock's write leaves s1's")
    await redis.flushdb()
    await history.applyTicks([{ stock: 's1', time: '090000', price: 11 }])
    const afterFlush = await market.listSummaries()
    assert.ok(BigInt(afterFlush.gen) > BigInt(second.gen), `the generation after emptying (${afterFlush.gen}) is above any before (${second.gen})`)
    assert.ok(BigInt((await market.readCandles('s1', '1m', '000000', '235959'))!.gen!) > BigInt(firstCandles.gen!))
    // Redis back from an older save: the counter holds a value it had before the lost writes.
    const lost = afterFlush.gen
    await redis.set('bourse:market:gen', first.gen)
    await history.applyTicks([{ stock: 's3', time: '090000', price: 30 }])
    const afterRollback = (await market.listSummaries()).gen
    assert.ok(BigInt(afterRollback) > BigInt(lost), `the generation after going back (${afterRollback}) is above the lost ones (${lost})`)
    // Many writes at once still give a new generation each (the counter may run ahead of the clock).
    const seen = new Set<string>()
    for (let i = 0; i < 50; i++) {
      await history.applyTicks([{ stock: 's1', time: hhmmss(9 * 3600 + 1 + i), price: i }])
      seen.add((await market.listSummaries()).gen)
    }
    assert.equal(seen.size, 50)
  })

  test('the Redis copy of the list is served while nothing changes, never one a slow reader stored after a write', async () => {
    await history.applyTicks([{ stock: 's1', time: '090000', price: 10 }])
    await market.listSummaries()
    const cached = await redis.get('bourse:cache:stocks')
    assert.ok(cached)
    const tag = cached.slice(0, cached.indexOf('\n'))
    const marked = (JSON.parse(cached.slice(tag.length + 1)) as StockSummary[]).map((s) => ({ ...s, performance: 42 }))
    // Changing the cached text shows it is what a read serves...
    await redis.set('bourse:cache:stocks', `${tag}\n${JSON.stringify(marked)}`)
    assert.ok((await market.listSummaries()).summaries.every((s) => s.performance === 42), 'served from the Redis copy')
    // ...and a value computed before a write but stored after it (a slow reader) is never served.
    await history.applyTicks([{ stock: 's2', time: '120000', price: 99 }])
    await redis.set('bourse:cache:stocks', `${tag}\n${JSON.stringify(marked)}`)
    const fresh = (await market.listSummaries()).summaries
    assert.equal(fresh.find((s) => s.stock === 's2')?.price, 99)
    assert.ok(fresh.every((s) => s.performance !== 42))
  })

  test('pages of a long history cover it exactly once, newest first', async () => {
    const ticks: Tick[] = []
    for (let s = 0; s < 3000; s++) {
      const t = 9 * 3600 + s
      const time = [Math.floor(t / 3600), Math.floor((t % 3600) / 60), t % 60].map((n) => String(n).padStart(2, '0')).join('')
      ticks.push({ stock: 's1', time, price: s % 7 === 0 ? null : s + 0.25 })
    }
    await history.applyTicks(ticks)
    const seen: Array<{ time: string; price: number | null }> = []
    let before: number | undefined
    for (;;) {
      const page = await market.readPage('s1', before, 200)
      assert.ok(page)
      seen.push(...page.items)
      if (page.from === 0) break
      before = page.from
    }
    assert.deepEqual(seen, ticks.map((t) => ({ time: t.time, price: t.price })).reverse())
  })
})

describe('a history written before candles were kept', () => {
  test('gets its entry count and candles at its next change', async () => {
    await history.applyTicks([
      { stock: 's1', time: '090000', price: 4 },
      { stock: 's1', time: '090010', price: 6 },
    ])
    // As an older version left it: no count, no candles.
    await redis.hdel('bourse:h:s1:m', 'n')
    await redis.del('bourse:h:s1:c')
    await history.applyTicks([{ stock: 's1', time: '090020', price: 5 }])
    assert.deepEqual(await candlesOf('s1', '1m', '090000', '090000'), [
      { time: '090000', open: 4, high: 6, low: 4, close: 5, volume: 3 },
    ])
    assert.equal(((await market.listSummaries()).summaries)[0]?.ticks, 3)
  })
})

describe('a large batch of one stock', () => {
  test('12,000 ticks in order in one batch: every candle written', async () => {
    const ticks: Tick[] = []
    for (let s = 0; s < 12_000; s++) {
      const t = 8 * 3600 + s * 3
      ticks.push({ stock: 'big', time: [Math.floor(t / 3600), Math.floor((t % 3600) / 60), t % 60].map((n) => String(n).padStart(2, '0')).join(''), price: s + 1 })
    }
    await history.applyTicks(ticks)
    const model = applyToModel(new Map(), ticks)
    await assertCandlesExact(model, 'big')
  })
})
