import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatPriceLine, parsePriceLine } from '../../src/market/price-csv.ts'
import type { Tick } from '../../src/market/tick.ts'
import {
  createPrng,
  generateTicks,
  liveTicks,
  type TickGeneratorOptions,
  timeToSeconds,
} from '../../src/market/tick-generator.ts'

const ticks = (options: Omit<TickGeneratorOptions, 'random'>, seed: number): Tick[] => [
  ...generateTicks({ ...options, random: createPrng(seed) }),
]

describe('generateTicks', () => {
  it('gives the same ticks for the same seed and other ticks for another seed', () => {
    const options = { stocks: 10, ticks: 5000 }
    const a = ticks(options, 42)
    assert.deepEqual(ticks(options, 42), a)
    assert.notDeepEqual(ticks(options, 43), a)
    assert.equal(a.length, 5000)
  })

  it('names stocks stock1..stockN and gives each one strictly increasing times', () => {
    // 1,000,000 ticks over 100 stocks and a whole day: about 11.6 ticks a second.
    const last = new Map<string, number>()
    let previous = -1
    let count = 0
    for (const tick of generateTicks({
      stocks: 100,
      ticks: 1_000_000,
      start: '000000',
      random: createPrng(7),
    })) {
      count++
      const second = timeToSeconds(tick.time)
      assert.ok(second >= previous, `time ${tick.time} goes back in the file`)
      previous = second
      const before = last.get(tick.stock)
      if (before !== undefined && before >= second)
        assert.fail(`${tick.stock} has ${tick.time} twice or backwards`)
      last.set(tick.stock, second)
    }
    assert.equal(count, 1_000_000)
    assert.deepEqual([...last.keys()].sort(), Array.from({ length: 100 }, (_, i) => `stock${i + 1}`).sort())
  })

  it('keeps the times between start and end', () => {
    const all = ticks({ stocks: 3, ticks: 500, start: '090000', end: '095947' }, 1)
    assert.ok(all.every((t) => t.time >= '090000' && t.time <= '095947'))
    // With fewer ticks than seconds the picked seconds are spread over the range.
    assert.ok((all[0]?.time ?? '') < '090200')
    assert.ok((all.at(-1)?.time ?? '') > '095700')
  })

  it('fills every second when there are exactly as many ticks as slots', () => {
    const all = ticks({ stocks: 2, ticks: 20, start: '120000', end: '120009' }, 3)
    const seconds = all.map((t) => t.time)
    assert.deepEqual(seconds, Array.from({ length: 10 }, (_, i) => [`12000${i}`, `12000${i}`]).flat())
  })

  it('refuses more ticks than one per stock per second', () => {
    assert.throws(() => ticks({ stocks: 2, ticks: 21, start: '120000', end: '120009' }, 3), RangeError)
    assert.throws(() => ticks({ stocks: 1, ticks: 1, start: '100000', end: '090000' }, 3), RangeError)
    assert.throws(() => ticks({ stocks: 0, ticks: 1 }, 3), RangeError)
  })

  it('writes lines that parse back to the same ticks', () => {
    const all = ticks({ stocks: 20, ticks: 20_000 }, 11)
    all.forEach((tick, i) => {
      assert.deepEqual(parsePriceLine(formatPriceLine(tick), i + 2), { line: i + 2, tick })
    })
  })

  it('leaves about 2% of the prices empty by default', () => {
    const all = ticks({ stocks: 10, ticks: 100_000 }, 5)
    const share = all.filter((t) => t.price === null).length / all.length
    assert.ok(share > 0.015 && share < 0.025, `empty share ${share}`)
    assert.equal(
      ticks({ stocks: 10, ticks: 10_000, emptyPercent: 0 }, 5).filter((t) => t.price === null).length,
      0,
    )
  })

  it('walks prices in small steps, rounded, never below the smallest unit', () => {
    const all = ticks({ stocks: 5, ticks: 50_000, maxMovePercent: 1 }, 9)
    const last = new Map<string, number>()
    for (const { stock, price } of all) {
      if (price === null) continue
      assert.ok(price >= 0.01)
      assert.equal(Math.round(price * 100) / 100, price)
      const before = last.get(stock)
      if (before !== undefined) {
        // 1% of the previous price, plus the rounding of both.
        assert.ok(Math.abs(price - before) <= before * 0.01 + 0.01, `${stock} ${before} -> ${price}`)
      } else {
        assert.ok(price >= 9.9 && price <= 101, `first price ${price}`)
      }
      last.set(stock, price)
    }
    // A crash towards zero stops at one unit of the last decimal.
    const falling = ticks({ stocks: 1, ticks: 2000, startPrices: [0.05], maxMovePercent: 90, decimals: 2 }, 1)
    assert.ok(falling.every((t) => t.price === null || t.price >= 0.01))
    assert.ok(
      falling.some((t) => t.price === 0.01),
      'the walk reached the floor',
    )
  })

  it('starts from the given prices and rounds to the given decimals', () => {
    const all = ticks(
      { stocks: 3, ticks: 300, startPrices: [1000, 450, 1700], decimals: 0, maxMovePercent: 3 },
      2,
    )
    for (const { stock, price } of all.slice(0, 30)) {
      if (price === null) continue
      const start = { stock1: 1000, stock2: 450, stock3: 1700 }[stock] ?? 0
      assert.ok(Math.abs(price - start) / start < 0.5, `${stock} at ${price}`)
    }
    assert.ok(all.every((t) => t.price === null || Number.isInteger(t.price)))
  })
})

describe('liveTicks', () => {
  /** A fake clock that sleeping moves forward. */
  function fakeClock(startMs: number) {
    let now = startMs
    return { now: () => now, sleep: async (ms: number) => void (now += ms) }
  }

  it('stamps ticks with the current second, about the rate per second, one per stock per second', async () => {
    const clock = fakeClock(Date.UTC(2026, 0, 1, 23, 59, 50, 300))
    const controller = new AbortController()
    const seen: Array<Tick & { at: number }> = []
    for await (const tick of liveTicks({ stocks: 5, ratePerSecond: 2.5, random: createPrng(3), signal: controller.signal, ...clock })) {
      seen.push({ ...tick, at: clock.now() })
      if (seen.length === 300) controller.abort()
    }
    assert.equal(seen.length, 300)
    const seconds = new Map<string, string[]>()
    for (const tick of seen) {
      // Each tick leaves within the second it is stamped with.
      const at = new Date(tick.at)
      const stamp = `${String(at.getUTCHours()).padStart(2, '0')}${String(at.getUTCMinutes()).padStart(2, '0')}${String(at.getUTCSeconds()).padStart(2, '0')}`
      assert.equal(tick.time, stamp)
      seconds.set(tick.time, [...(seconds.get(tick.time) ?? []), tick.stock])
    }
    for (const [time, stocks] of seconds) assert.equal(new Set(stocks).size, stocks.length, `two ticks of one stock at ${time}`)
    // The times wrap at midnight, and the rate holds on average (300 ticks over about 120 s).
    assert.ok(seconds.has('235959') && seconds.has('000000'))
    const span = (seen.at(-1)!.at - seen[0]!.at) / 1000
    assert.ok(Math.abs(300 / span - 2.5) < 0.5, `${300 / span} ticks per second`)
  })

  it('refuses a rate above one tick per stock per second, and stops when aborted', async () => {
    const controller = new AbortController()
    const make = (rate: number) => liveTicks({ stocks: 2, ratePerSecond: rate, random: createPrng(1), signal: controller.signal })
    await assert.rejects(make(3).next(), /at most one tick per stock per second \(2\)/)
    await assert.rejects(make(0).next(), RangeError)
    controller.abort()
    assert.deepEqual(await make(1).next(), { done: true, value: undefined })
  })
})
