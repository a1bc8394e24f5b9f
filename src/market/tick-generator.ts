/**
 * Random-walk price ticks in the seed's CSV form (the random tick producer of seed 003,
 * made deterministic): stocks `stock1..stockN`, each starting at its own price, each tick
 * moving one stock by a small random percent. Pure: all randomness comes from the PRNG
 * passed in, so the same seed gives the same ticks.
 */
import type { Tick } from './tick.ts'

/** A source of uniform numbers in `[0, 1)`. */
export type Random = () => number

/**
 * A small seeded PRNG (sfc32, seeded through splitmix32): fast, 128 bits of state, and the
 * same sequence on every platform for the same seed.
 */
export function createPrng(seed: number): Random {
  let s = seed >>> 0
  const splitmix = () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
    return (z ^ (z >>> 15)) >>> 0
  }
  let a = splitmix()
  let b = splitmix()
  let c = splitmix()
  let d = splitmix()
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) >>> 0
    return t / 4294967296
  }
}

/** Options for {@link generateTicks}. */
export interface TickGeneratorOptions {
  /** Number of stocks, named `stock1..stockN`. */
  stocks: number
  /** Number of ticks (rows) to generate. */
  ticks: number
  /** The PRNG every random choice comes from (see {@link createPrng}). */
  random: Random
  /** First possible time, `hhmmss`. @defaultValue '090000' */
  start?: string
  /** Last possible time, `hhmmss`. @defaultValue '235959' */
  end?: string
  /**
   * Starting price of each stock, in order (stock1 first). Missing entries start at a
   * random price from 10 to 100, as in seed 003.
   */
  startPrices?: number[]
  /** Decimals prices are rounded to; the smallest price is one unit of the last decimal. @defaultValue 2 */
  decimals?: number
  /** Largest move of one tick, in percent of the price (uniform in ±this). @defaultValue 1 */
  maxMovePercent?: number
  /** Share of rows with an empty price ("no data reported"), in percent. @defaultValue 2 */
  emptyPercent?: number
}

/** Seconds of an `hhmmss` time. */
export function timeToSeconds(time: string): number {
  if (!/^([01]\d|2[0-3])[0-5]\d[0-5]\d$/.test(time))
    throw new RangeError(`time ${JSON.stringify(time)} is not hhmmss`)
  return Number(time.slice(0, 2)) * 3600 + Number(time.slice(2, 4)) * 60 + Number(time.slice(4, 6))
}

/** The `hhmmss` form of a second of the day. */
export function secondsToTime(seconds: number): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${pad(Math.floor(seconds / 3600))}${pad(Math.floor(seconds / 60) % 60)}${pad(seconds % 60)}`
}

/** Why the options cannot produce ticks, or undefined when they can. */
export function tickGeneratorProblem(options: Omit<TickGeneratorOptions, 'random'>): string | undefined {
  const { stocks, ticks } = options
  if (!Number.isInteger(stocks) || stocks < 1) return `stocks must be a whole number >= 1 (got ${stocks})`
  if (!Number.isInteger(ticks) || ticks < 0) return `ticks must be a whole number >= 0 (got ${ticks})`
  let first: number
  let last: number
  try {
    first = timeToSeconds(options.start ?? '090000')
    last = timeToSeconds(options.end ?? '235959')
  } catch (err) {
    return (err as Error).message
  }
  if (last < first) return `end ${options.end} is before start ${options.start ?? '090000'}`
  // One stock never gets two ticks in the same second, so a second holds at most `stocks` ticks.
  const capacity = (last - first + 1) * stocks
  if (ticks > capacity) {
    return `${ticks} ticks do not fit: ${stocks} stocks over ${last - first + 1} seconds hold at most ${capacity} (one tick per stock per second)`
  }
  const decimals = options.decimals ?? 2
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 6)
    return `decimals must be 0 to 6 (got ${decimals})`
  const move = options.maxMovePercent ?? 1
  if (!(move >= 0 && move < 100)) return `max move must be from 0 to less than 100 percent (got ${move})`
  const empty = options.emptyPercent ?? 2
  if (!(empty >= 0 && empty <= 100)) return `empty share must be from 0 to 100 percent (got ${empty})`
  for (const price of options.startPrices ?? []) {
    if (!(Number.isFinite(price) && price > 0)) return `start prices must be positive numbers (got ${price})`
  }
  return undefined
}

/**
 * Generates ticks in time order (`hhmmss` never decreases down the file).
 *
 * Times: second by second from `start` to `end`, each second gets `floor(R/S)` or
 * `floor(R/S) + 1` ticks (R ticks left, S seconds left, the extra one with probability
 * `frac(R/S)`), which spreads the ticks over the whole range and ends exactly at `ticks`.
 * When there are fewer ticks than seconds this picks a uniformly random set of seconds.
 * Within a second every tick goes to a different stock (a partial shuffle), so the times of
 * one stock are strictly increasing. Throws a RangeError for options that cannot work.
 */
export function* generateTicks(options: TickGeneratorOptions): Generator<Tick> {
  const problem = tickGeneratorProblem(options)
  if (problem) throw new RangeError(problem)
  const { random } = options
  const walk = createWalk(options)
  const last = timeToSeconds(options.end ?? '235959')
  let second = timeToSeconds(options.start ?? '090000')
  let left = options.ticks
  for (; left > 0; second++) {
    const count = Math.min(left, ticksThisSecond(left / (last - second + 1), random))
    yield* walk.second(secondsToTime(second), count)
    left -= count
  }
}

/** `floor(share)` or `floor(share) + 1` ticks, the extra one with probability `frac(share)`. */
function ticksThisSecond(share: number, random: Random): number {
  const whole = Math.floor(share)
  return whole + (random() < share - whole ? 1 : 0)
}

/** The random walk of every stock's price, one second of ticks at a time. */
function createWalk(options: Omit<TickGeneratorOptions, 'ticks' | 'start' | 'end'>) {
  const { stocks, random } = options
  const decimals = options.decimals ?? 2
  const scale = 10 ** decimals
  const minPrice = 1 / scale
  const move = (options.maxMovePercent ?? 1) / 100
  const empty = (options.emptyPercent ?? 2) / 100
  const round = (price: number) => Math.max(minPrice, Math.round(price * scale) / scale)
  const prices = Array.from({ length: stocks }, (_, i) => round(options.startPrices?.[i] ?? 10 + random() * 90))
  const order = Array.from({ length: stocks }, (_, i) => i)
  return {
    /** `count` ticks (at most one per stock) at `time`: a partial shuffle picks the stocks. */
    *second(time: string, count: number): Generator<Tick> {
      for (let k = 0; k < count; k++) {
        const pick = k + Math.floor(random() * (stocks - k))
        const stock = order[pick] as number
        order[pick] = order[k] as number
        order[k] = stock
        if (random() < empty) {
          yield { time, stock: `stock${stock + 1}`, price: null }
          continue
        }
        const price = round((prices[stock] as number) * (1 + (random() * 2 - 1) * move))
        prices[stock] = price
        yield { time, stock: `stock${stock + 1}`, price }
      }
    },
  }
}

/** Options for {@link liveTicks}: the walk's, a rate, and the clock. */
export interface LiveTickOptions extends Omit<TickGeneratorOptions, 'ticks' | 'start' | 'end'> {
  /** Ticks per second on average; at most one per stock per second, so at most `stocks`. */
  ratePerSecond: number
  /** Stops the ticks (the generator returns). */
  signal: AbortSignal
  /** The clock, ms since the epoch. @defaultValue Date.now */
  now?: () => number
  /**
   * The `hhmmss` of the first second, the following ones counting on from it with the
   * clock (after an earlier file's last time). @defaultValue the clock's own time of day (UTC)
   */
  firstTime?: string
  /** Waits `ms` or until `signal` aborts. @defaultValue node's timers/promises setTimeout */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

const abortableSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

/**
 * Ticks as they happen, until `signal` aborts: each wall-clock second (UTC) gets about
 * `ratePerSecond` ticks, spread over the second and stamped with its `hhmmss`, each for a
 * different stock, so a stock never has two ticks at one time. The times wrap at midnight
 * (the contract's times have no date).
 */
export async function* liveTicks(options: LiveTickOptions): AsyncGenerator<Tick> {
  const { ratePerSecond, signal, random } = options
  if (!(ratePerSecond > 0 && ratePerSecond <= options.stocks)) {
    throw new RangeError(`rate must be above 0 and at most one tick per stock per second (${options.stocks}); got ${ratePerSecond}`)
  }
  const now = options.now ?? Date.now
  const sleep = options.sleep ?? abortableSleep
  const walk = createWalk(options)
  let second = Math.floor(now() / 1000)
  // Seconds of the day are the clock's, or count on from firstTime.
  const shift = options.firstTime === undefined ? 0 : timeToSeconds(options.firstTime) - (second % 86_400)
  while (!signal.aborted) {
    const count = Math.min(options.stocks, ticksThisSecond(ratePerSecond, random))
    const time = secondsToTime((((second + shift) % 86_400) + 86_400) % 86_400)
    let k = 0
    for (const tick of walk.second(time, count)) {
      const due = second * 1000 + (k++ * 1000) / count
      if (due > now()) await sleep(due - now(), signal)
      if (signal.aborted) return
      yield tick
    }
    // The next second that has not started yet, skipping any the consumer fell behind on.
    second = Math.max(second + 1, Math.floor(now() / 1000))
    if (second * 1000 > now()) await sleep(second * 1000 - now(), signal)
  }
}

/**
 * The options (and seed) that made `fixtures/sample-prices.csv`: three stocks near the
 * seed's magnitudes (stock1 ~1000, stock2 ~450, stock3 ~1700), whole prices, 510 rows
 * from 09:00:00 to 09:59:47 like the seed's price_data.csv. Regenerate it with
 * `bourse generate --preset sample --out fixtures/sample-prices.csv`.
 */
export const SAMPLE_PRICES = Object.freeze({
  seed: 17,
  stocks: 3,
  ticks: 510,
  start: '090000',
  end: '095947',
  startPrices: Object.freeze([1000, 450, 1700]) as number[],
  decimals: 0,
  maxMovePercent: 3,
  emptyPercent: 1,
})
