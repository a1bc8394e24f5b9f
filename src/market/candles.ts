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
  // The times increase, so each interval's candles are built one after the other. A tick
  // extends the current 1m candle (a string comparison and a few number comparisons); a
  // 1m candle, once its minute is over, is folded into the current 5m and 1h candles,
  // which are the merges of their minutes. Bucket names are made once per 1m bucket.
  const texts = new Map<string, string[]>()
  const open: Array<OpenCandle | undefined> = [undefined, undefined, undefined]
  const close = (candle: OpenCandle | undefined) => {
    if (!candle) return
    const entry = `${candle.key}=${candle.o},${candle.h},${candle.l},${candle.c},${candle.n}`
    const list = texts.get(candle.field)
    if (list) list.push(entry)
    else texts.set(candle.field, [entry])
  }
  /** Folds the minute's candle into the longer ones open (which began with or before it). */
  const foldMinute = () => {
    const minute = open[0]
    if (!minute) return
    for (let k = 1; k < 3; k++) {
      const into = open[k]!
      if (minute.hv > into.hv) {
        into.h = minute.h
        into.hv = minute.hv
      }
      if (minute.lv < into.lv) {
        into.l = minute.l
        into.lv = minute.lv
      }
      into.c = minute.c
      into.n += minute.n
    }
    close(minute)
  }
  let minute = ''
  let candle: OpenCandle | undefined
  for (let i = 0; i < times.length; i++) {
    const price = prices[i]
    const time = times[i]!
    if (price === null || price === undefined || !HHMMSS.test(time)) continue
    const token = tokens[i]!
    if (minute === '' || !time.startsWith(minute)) {
      foldMinute()
      minute = time.slice(0, 4)
      const hour = time.slice(0, 2)
      for (let k = 0; k < 3; k++) {
        const key = bucketOf(time, CANDLE_INTERVALS[k]!).slice(2)
        const field = `${CANDLE_INTERVALS[k]}:${hour}`
        const current = open[k]
        if (k > 0 && current?.field === field && current.key === key) continue
        if (k > 0) close(current)
        open[k] = { field, key, o: token, h: token, hv: price, l: token, lv: price, c: token, n: 0 }
      }
      candle = open[0]!
    }
    if (price > candle!.hv) {
      candle!.h = token
      candle!.hv = price
    }
    if (price < candle!.lv) {
      candle!.l = token
      candle!.lv = price
    }
    candle!.c = token
    candle!.n++
  }
  foldMinute()
  close(open[1])
  close(open[2])
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
