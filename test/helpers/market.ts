/**
 * An independent model of the Redis contract, to compare the real stores against, and
 * helpers to fill topics and read stocks.
 */
import { readFileSync } from 'node:fs'
import type { Redis } from 'ioredis'
import { parsePriceLine } from '../../src/market/price-csv.ts'
import type { Tick } from '../../src/market/tick.ts'
import { encodeTick } from '../../src/market/tick-message.ts'
import { createProducer } from '../../src/platform/kafka/clients.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { testConfig } from './infra.ts'

/** The original sample files of the seed. */
export const originalFixtures = {
  prices: new URL('../../../shared/fixtures/price_data.csv', import.meta.url).pathname,
  redis: new URL('../../../shared/fixtures/redis_data.txt', import.meta.url).pathname,
}

/** A stock in the model: the contract JSON plus how many changes its history had. */
export interface ModelStock {
  json: Record<string, unknown> & { time: string[]; price: Array<number | ''> }
  changes: number
}

/** Applies ticks in order to a model of stocks, as the contract says. */
export function applyToModel(stocks: Map<string, ModelStock>, ticks: Iterable<Tick>): Map<string, ModelStock> {
  for (const tick of ticks) {
    let stock = stocks.get(tick.stock)
    if (!stock) {
      stock = { json: { performance: 0, time: [], price: [] }, changes: 0 }
      stocks.set(tick.stock, stock)
    }
    const price = tick.price ?? ''
    const at = stock.json.time.indexOf(tick.time)
    if (at === -1) {
      stock.json.time.push(tick.time)
      stock.json.price.push(price)
      stock.changes++
    } else if (stock.json.price[at] !== price) {
      stock.json.price[at] = price
      stock.changes++
    }
  }
  return stocks
}

/** The good ticks of a CSV file, in file order. */
export function readTicks(path: string): Tick[] {
  const lines = readFileSync(path, 'utf8').split(/\r?\n/)
  const ticks: Tick[] = []
  lines.forEach((text, i) => {
    if (i === 0 || text.trim() === '') return
    const row = parsePriceLine(text, i + 1)
    if ('tick' in row) ticks.push(row.tick)
  })
  return ticks
}

/** Reads every given stock key as JSON. */
export async function readStocks(redis: Redis, stocks: Iterable<string>): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>()
  for (const stock of stocks) {
    const raw = await redis.get(stock)
    out.set(stock, raw === null ? undefined : JSON.parse(raw))
  }
  return out
}

/** Sends ticks to a topic (key = stock) with the project's idempotent producer. */
export async function produceTicks(topic: string, ticks: readonly Tick[], chunk = 5000): Promise<void> {
  const producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
  try {
    for (let i = 0; i < ticks.length; i += chunk) {
      await producer.send({ messages: ticks.slice(i, i + chunk).map((t) => encodeTick(topic, t)) })
    }
  } finally {
    await producer.close()
  }
}

/**
 * Ticks for crash tests: unique times per stock, plus price corrections of earlier
 * times (some flipping a price back), so that a tick applied twice or lost changes the
 * final state or the change count.
 */
export function ticksWithCorrections(count: number, stocks: number, seed = 42): Tick[] {
  let state = seed >>> 0
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const next = new Array<number>(stocks).fill(0)
  const hhmmss = (s: number) =>
    [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, '0')).join('')
  const ticks: Tick[] = []
  for (let i = 0; i < count; i++) {
    const s = Math.floor(random() * stocks)
    const stock = `stock${s + 1}`
    const price = random() < 0.02 ? null : Math.round(random() * 100_000) / 100
    const used = next[s]!
    if (used > 0 && random() < 0.15) {
      ticks.push({ stock, time: hhmmss(Math.floor(random() * used)), price })
    } else {
      ticks.push({ stock, time: hhmmss(used), price })
      next[s] = used + 1
    }
  }
  return ticks
}
