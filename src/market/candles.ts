/**
 * OHLC candles of the stock histories: their buckets, and the candles of one batch of
 * ticks as the apply script merges them (see `lua/history.lua`).
 */

/** Candle widths kept and served. */
export const CANDLE_INTERVALS = ['1m', '5m', '1h'] as const
/** One of {@link CANDLE_INTERVALS}. */
export type CandleInterval = (typeof CANDLE_INTERVALS)[number]

/** The bucket start (`hhmmss`) of an `hhmmss` time for `interval`. */
export function bucketOf(time: string, interval: CandleInterval): string {
  if (interval === '1h') return `${time.slice(0, 2)}0000`
  if (interval === '1m') return `${time.slice(0, 4)}00`
  const mm = Number(time.slice(2, 4))
  return `${time.slice(0, 2)}${String(mm - (mm % 5)).padStart(2, '0')}00`
}

const HHMMSS = /^\d{6}$/

/**
 * The candles of a batch of one stock's ticks whose times strictly increase, as the apply
 * script takes them: field/value pairs, one per interval and hour (`1m:09`), the value
 * that hour's candles in time order (`MMSS=open,high,low,close,count;...`, MMSS the bucket
 * start within the hour, prices as their tokens); priced ticks of `hhmmss` times only.
 * The script appends them to the stored ones, all of whose times are earlier. Computed
 * here so that the script does no work per tick.
 */
export function batchCandleArgs(times: readonly string[], tokens: readonly string[], prices: ReadonlyArray<number | null>): string[] {
  // The times increase, so each interval's candles are built one after the other: the
  // current one is extended until its bucket changes. A tick costs a string comparison
  // and a few number comparisons; bucket names are made once per 1m bucket.
  const texts = new Map<string, string[]>()
  const open: Array<OpenCandle | undefined> = [undefined, undefined, undefined]
  const close = (candle: OpenCandle | undefined) => {
    if (!candle) return
    const entry = `${candle.key}=${candle.o},${candle.h},${candle.l},${candle.c},${candle.n}`
    const list = texts.get(candle.field)
    if (list) list.push(entry)
    else texts.set(candle.field, [entry])
  }
  let minute = ''
  for (let i = 0; i < times.length; i++) {
    const price = prices[i]
    const time = times[i]!
    if (price === null || price === undefined || !HHMMSS.test(time)) continue
    const token = tokens[i]!
    if (!time.startsWith(minute) || minute === '') {
      minute = time.slice(0, 4)
      const hour = time.slice(0, 2)
      for (let k = 0; k < 3; k++) {
        const bucket = bucketOf(time, CANDLE_INTERVALS[k]!)
        const key = bucket.slice(2)
        const field = `${CANDLE_INTERVALS[k]}:${hour}`
        const current = open[k]
        if (current?.field === field && current.key === key) continue
        close(current)
        open[k] = { field, key, o: token, h: token, hv: price, l: token, lv: price, c: token, n: 0 }
      }
    }
    for (let k = 0; k < 3; k++) {
      const candle = open[k]!
      if (price > candle.hv) {
        candle.h = token
        candle.hv = price
      }
      if (price < candle.lv) {
        candle.l = token
        candle.lv = price
      }
      candle.c = token
      candle.n++
    }
  }
  for (const candle of open) close(candle)
  const args: string[] = []
  for (const [field, entries] of texts) args.push(field, entries.join(';'))
  return args
}

interface OpenCandle {
  /** `1m:09`: the interval and hour. */
  field: string
  /** `3500`: the bucket start within the hour. */
  key: string
  o: string
  h: string
  hv: number
  l: string
  lv: number
  c: string
  n: number
}
