/**
 * The insights of a product alert (phase 2): what its newest run says beyond the list of
 * items, decided from the stored history of its runs alone. No I/O here: the caller loads
 * the runs, asks {@link findInsights}, checks {@link insightAllowed} and sends the email.
 *
 * Money stays exact: every total is a decimal string read with big.js, never a float, so
 * a 10% rule fires at 10.00% and not at 9.99%, whatever the digits.
 */
import Big from 'big.js'
import type { Config } from '../platform/config.ts'
import { quote } from '../platform/quote.ts'

/** The cheapest item of a run: the item whose total (price + shipping) is lowest. */
export interface CheapestItem {
  /** eBay's item id (`v1|385462201428|653317790198`). */
  itemId: string
  /** The item's title as eBay gave it. */
  title: string
  /** Price plus shipping, an exact non-negative decimal string (`12.50`). */
  total: string
  /** ISO 4217 code of `total` (`USD`); compared as written. */
  currency: string
  /** The item's page on eBay, for the email's link. */
  itemWebUrl: string
}

/** What one run of an alert found, as far as insights are concerned. */
export interface RunSummary {
  /** When the run was due (its schedule slot), which orders runs and measures spans. */
  dueAt: Date
  /** The run's cheapest item; null when the run found nothing. */
  cheapest: CheapestItem | null
}

/** The thresholds of the insight rules (see {@link insightRulesFromConfig}). */
export interface InsightRules {
  /** Least fall, in percent, that makes a price drop: a decimal string, 0 < x <= 100 (`"10"`). */
  dropPercent: string
  /** How far back the previous cheapest price is looked for, in ms (2 days by default). */
  windowMs: number
  /** How long the cheapest price must stay the same to call the market flat, in ms (2 days by default). */
  flatMs: number
}

/** An insight the newest run of an alert gives; {@link findInsights} returns them in this order of kinds. */
export type Insight =
  | {
      /** An item at or under the alert's `max_price` has just appeared. */
      kind: 'under_max'
      /** The run's cheapest item, the one at or under the maximum. */
      item: CheapestItem
      /** The alert's `max_price`, as stored. */
      maxPrice: string
    }
  | {
      /** The cheapest price fell by at least `dropPercent` against the previous window. */
      kind: 'price_drop'
      /** The new cheapest item. */
      item: CheapestItem
      /** The item that was cheapest in the window (the earliest of equals). */
      previousItem: CheapestItem
      /** When `previousItem` was seen. */
      previousAt: Date
      /** The lowest total of the window, as stored. */
      previousCheapest: string
      /** The new cheapest total, as stored. */
      currentCheapest: string
      /** The actual fall in percent, rounded half up to 2 decimals (`"33.33"`, `"66.67"`, `"10.00"`). */
      dropPercent: string
    }
  | {
      /** The cheapest price has not changed for `flatMs`. */
      kind: 'flat'
      /** The unchanged cheapest total, as the newest run stored it. */
      price: string
      /** The currency of `price`. */
      currency: string
      /** The newest run's cheapest item. */
      item: CheapestItem
      /** When the first run of the unchanged stretch was due. */
      since: Date
      /** Whole days from `since` to the newest run (rounded down). */
      sinceDays: number
      /** Milliseconds from `since` to the newest run (for spans shorter than a day). */
      sinceMs: number
      /** Runs the stretch rests on, the newest included (the email can say how often it looked). */
      runs: number
    }

/** A decimal percentage above 0 and at most 100, the same as `INSIGHT_DROP_PERCENT` takes. */
const PERCENT = /^(100(\.0+)?|[1-9]\d?(\.\d+)?|0\.\d*[1-9]\d*)$/
/** A non-negative amount in plain decimal notation, as eBay writes prices (`0.75`, `12`). */
const AMOUNT = /^\d+(\.\d+)?$/
const DAY_MS = 86_400_000

// A constructor of our own, so that the rounding of the reported drop does not depend on
// (or change) the global Big settings another module may set. Its division is correctly
// rounded: big.js decides the last digit from the whole remainder, not from a rounded
// intermediate, so a drop of 10.00499…9% is never first made 10.005 and then 10.01.
const Decimal = Big()
Decimal.DP = 2
Decimal.RM = Big.roundHalfUp

/** The insight rules `config` describes. */
export function insightRulesFromConfig(
  config: Pick<Config, 'INSIGHT_DROP_PERCENT' | 'INSIGHT_WINDOW_MS' | 'INSIGHT_FLAT_MS'>,
): InsightRules {
  return {
    dropPercent: config.INSIGHT_DROP_PERCENT,
    windowMs: config.INSIGHT_WINDOW_MS,
    flatMs: config.INSIGHT_FLAT_MS,
  }
}

/**
 * The insights the newest run (`current`) gives, given the runs before it, in the order
 * under_max, price_drop, flat; none when `current` found nothing. A flat market always
 * comes alone: it needs the run before at the same price, which rules out both a drop
 * and a first item under the maximum.
 *
 * `history` is the alert's runs before `current`, in any order; runs due at or after
 * `current.dueAt` are ignored (so passing `current` in it as well changes nothing). It
 * should hold only runs since the alert's phrase, `max_price` or `currency` last changed:
 * runs of another search are another market. Prices are only ever compared within one
 * currency. Throws a RangeError naming the field when a total, a date, `max_price` or a
 * rule is malformed.
 */
export function findInsights(input: {
  alert: { max_price: string | null; currency: string | null }
  current: RunSummary
  history: readonly RunSummary[]
  rules: InsightRules
}): Insight[] {
  const { alert, current, history, rules } = input
  const dropPercent = checkRules(rules)
  const maxPrice = alert.max_price === null ? null : amount(alert.max_price, 'alert.max_price')
  const now = readRun(current, 'current')
  const before = history
    .map((run, i) => readRun(run, `history[${i}]`))
    .filter((run) => run.at < now.at)
    .sort((a, b) => a.at - b.at)
  if (now.cheapest === null) return []
  const found: Found = { ...now, cheapest: now.cheapest }

  const insights: Insight[] = []
  if (alert.max_price !== null && maxPrice !== null) {
    if (isNewlyUnderMax(found, before.at(-1), maxPrice, alert.currency)) {
      insights.push({ kind: 'under_max', item: found.cheapest.item, maxPrice: alert.max_price })
    }
  }
  const drop = findPriceDrop(found, before, rules.windowMs, dropPercent)
  if (drop) insights.push(drop)
  const flat = findFlat(found, before, rules.flatMs)
  if (flat) insights.push(flat)
  return insights
}

/**
 * Whether an insight email may go at `at`: none went in the `minIntervalMs` before it.
 * One sent exactly `minIntervalMs` earlier no longer counts (yesterday's 10:00 email
 * allows today's 10:00 one). One recorded after `at` (another instance's clock ahead)
 * counts as just sent. A `minIntervalMs` of 0 allows every insight.
 */
export function insightAllowed(lastInsightAt: Date | null, at: Date, minIntervalMs: number): boolean {
  if (!Number.isSafeInteger(minIntervalMs) || minIntervalMs < 0) {
    throw new RangeError(`minIntervalMs must be a whole number of ms >= 0, got ${quote(minIntervalMs)}`)
  }
  const now = time(at, 'at')
  if (minIntervalMs === 0 || lastInsightAt === null) return true
  return now - time(lastInsightAt, 'lastInsightAt') >= minIntervalMs
}

/** A cheapest item with its total read. */
interface ReadItem {
  item: CheapestItem
  total: Big
}

/** A run with its time and total read and checked. */
interface Read {
  at: number
  dueAt: Date
  cheapest: ReadItem | null
}

/** A run that found something. */
type Found = Read & { cheapest: ReadItem }

/**
 * under_max: "as soon as an item at or under it appears". The newest run's cheapest is at
 * or under `max_price` and the run before was not (it found nothing, or more, or another
 * currency), so the alert says it once per appearance, not on every run while the price
 * stays under; an item that goes back over and comes under again is news again. With an
 * alert currency, only items in it count; without one, `max_price` is read in the
 * item's own currency.
 */
function isNewlyUnderMax(now: Found, previous: Read | undefined, maxPrice: Big, currency: string | null): boolean {
  const isUnder = (run: Read | undefined): boolean =>
    run?.cheapest != null &&
    (currency === null || run.cheapest.item.currency === currency) &&
    run.cheapest.total.lte(maxPrice)
  return isUnder(now) && !isUnder(previous)
}

/**
 * price_drop: the previous cheapest is the lowest total among the runs due in
 * [now − window, now) that found something in the same currency (the window's start is
 * included, the newest run excluded). With no such run, or a previous cheapest of 0
 * (nothing can fall below it, and it would divide by 0), there is no drop. Otherwise the
 * drop is (previous − now) / previous × 100 and fires when it is at least `dropPercent`,
 * compared exactly as (previous − now) × 100 >= dropPercent × previous, without division.
 * Because the newest run joins the window of the next one, a drop is said once: the next
 * run compares against it.
 */
function findPriceDrop(
  now: Found,
  before: readonly Read[],
  windowMs: number,
  dropPercent: Big,
): Insight | undefined {
  const from = now.at - windowMs
  let previous: { run: Read; cheapest: ReadItem } | undefined
  for (const run of before) {
    const cheapest = run.cheapest
    if (run.at < from || cheapest === null || cheapest.item.currency !== now.cheapest.item.currency) continue
    if (previous === undefined || cheapest.total.lt(previous.cheapest.total)) previous = { run, cheapest }
  }
  if (previous === undefined || previous.cheapest.total.eq(0)) return undefined
  const fall = previous.cheapest.total.minus(now.cheapest.total).times(100)
  if (fall.lt(dropPercent.times(previous.cheapest.total))) return undefined
  return {
    kind: 'price_drop',
    item: now.cheapest.item,
    previousItem: previous.cheapest.item,
    previousAt: previous.run.dueAt,
    previousCheapest: previous.cheapest.item.total,
    currentCheapest: now.cheapest.item.total,
    dropPercent: fall.div(previous.cheapest.total).toFixed(2),
  }
}

/**
 * flat: the stretch is the newest run and the runs just before it, back to the first one
 * whose cheapest differs (another total, another currency, or nothing found: each breaks
 * it). The market is flat when the stretch spans at least `flatMs`, from its first run's
 * due time to the newest's. Gaps between runs do not break it: the rule cannot tell a
 * missed run from a slower schedule, and a stop of our own is no change of the market;
 * the insight says on how many runs it rests.
 *
 * It is said once per stretch, on the run where the span first reaches `flatMs` (the run
 * before it fell short), not on every run after: "still flat" each day would be noise a
 * user unsubscribes from, and the daily email cap alone would still send it daily. A new
 * price starts a new stretch, which may be flat again two days later. If the daily cap
 * holds that one insight back, it is not said later: a flat market is no urgent news.
 */
function findFlat(now: Found, before: readonly Read[], flatMs: number): Insight | undefined {
  let first: Read = now
  let runs = 1
  for (let i = before.length - 1; i >= 0; i--) {
    const run = before[i]!
    if (!samePrice(run.cheapest, now.cheapest)) break
    first = run
    runs += 1
  }
  const previous = before.at(-1)
  const span = now.at - first.at
  // The run before the newest is in the stretch whenever span > 0; it already reaching
  // flatMs means the stretch was flat before, and was said then.
  if (span < flatMs || previous === undefined || previous.at - first.at >= flatMs) return undefined
  return {
    kind: 'flat',
    price: now.cheapest.item.total,
    currency: now.cheapest.item.currency,
    item: now.cheapest.item,
    since: first.dueAt,
    sinceDays: Math.floor(span / DAY_MS),
    sinceMs: span,
    runs,
  }
}

function samePrice(a: ReadItem | null, b: ReadItem): boolean {
  return a !== null && a.item.currency === b.item.currency && a.total.eq(b.total)
}

/** The rules checked; returns the drop threshold read. */
function checkRules(rules: InsightRules): Big {
  if (typeof rules.dropPercent !== 'string' || !PERCENT.test(rules.dropPercent)) {
    throw new RangeError(
      `rules.dropPercent must be a decimal percentage above 0 and at most 100, got ${quote(rules.dropPercent)}`,
    )
  }
  for (const field of ['windowMs', 'flatMs'] as const) {
    const value = rules[field]
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`rules.${field} must be a whole number of ms above 0, got ${quote(value)}`)
    }
  }
  return new Decimal(rules.dropPercent)
}

function readRun(run: RunSummary, where: string): Read {
  const at = time(run.dueAt, `${where}.dueAt`)
  if (run.cheapest === null) return { at, dueAt: run.dueAt, cheapest: null }
  return {
    at,
    dueAt: run.dueAt,
    cheapest: { item: run.cheapest, total: amount(run.cheapest.total, `${where}.cheapest.total`) },
  }
}

function amount(text: string, where: string): Big {
  if (typeof text !== 'string' || !AMOUNT.test(text)) {
    throw new RangeError(`${where} must be a non-negative decimal amount like "12.50", got ${quote(text)}`)
  }
  return new Decimal(text)
}

function time(date: Date, where: string): number {
  const ms = date instanceof Date ? date.getTime() : Number.NaN
  if (Number.isNaN(ms)) throw new RangeError(`${where} must be a valid Date, got ${quote(String(date))}`)
  return ms
}
