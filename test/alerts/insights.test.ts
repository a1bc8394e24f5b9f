/**
 * The insight rules of product alerts on hand-made run histories: each rule, its edges
 * (thresholds, window boundaries, empty runs, gaps, currencies, zero prices), the daily
 * cap, and the drop rule against an independent integer computation on random histories.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  type CheapestItem,
  findInsights,
  type Insight,
  type InsightRules,
  insightAllowed,
  insightRulesFromConfig,
  type RunSummary,
} from '../../src/alerts/insights.ts'
import { loadConfig } from '../../src/platform/config.ts'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
/** The newest run's due time in most tests; history is given as offsets from it. */
const T0 = Date.UTC(2025, 0, 10, 12, 0, 0)
const RULES: InsightRules = { dropPercent: '10', windowMs: 2 * DAY, flatMs: 2 * DAY }

type Alert = { max_price: string | null; currency: string | null }
const NO_MAX: Alert = { max_price: null, currency: null }

function item(total: string, currency = 'USD'): CheapestItem {
  return {
    itemId: `v1|${total}|${currency}`,
    title: `Drone at ${total} ${currency}`,
    total,
    currency,
    itemWebUrl: `https://www.ebay.com/itm/${encodeURIComponent(total)}`,
  }
}

/** A run due `offset` ms from T0 whose cheapest total is `total` (null: found nothing). */
function run(offset: number, total: string | null, currency = 'USD'): RunSummary {
  return { dueAt: new Date(T0 + offset), cheapest: total === null ? null : item(total, currency) }
}

function insights(
  current: RunSummary,
  history: RunSummary[],
  options: { alert?: Alert; rules?: Partial<InsightRules> } = {},
): Insight[] {
  return findInsights({
    alert: options.alert ?? NO_MAX,
    current,
    history,
    rules: { ...RULES, ...options.rules },
  })
}

function only<K extends Insight['kind']>(list: Insight[], kind: K): Extract<Insight, { kind: K }> | undefined {
  const found = list.filter((insight): insight is Extract<Insight, { kind: K }> => insight.kind === kind)
  assert.ok(found.length <= 1, `more than one ${kind}: ${JSON.stringify(list)}`)
  return found[0]
}

/**
 * Replays a series of runs (oldest first) the way the alert would: each run asks for its
 * insights with the runs before it. Returns each run's insight kinds, joined.
 */
function replay(series: RunSummary[], options: { alert?: Alert; rules?: Partial<InsightRules> } = {}): string[] {
  return series.map((current, i) =>
    insights(current, series.slice(0, i), options)
      .map((insight) => insight.kind)
      .join(','),
  )
}

/** Runs every `step` ms from `from` to `to` (offsets from T0, both included), all at `total`. */
function steady(from: number, to: number, step: number, total: string | null, currency = 'USD'): RunSummary[] {
  const runs: RunSummary[] = []
  for (let offset = from; offset <= to; offset += step) runs.push(run(offset, total, currency))
  return runs
}

describe('price_drop', () => {
  it('fires at exactly 10% below the cheapest of the previous two days, naming both items and prices', () => {
    const list = insights(run(0, '90.00'), [run(-30 * HOUR, '100.00'), run(-10 * HOUR, '120.00')])
    assert.deepEqual(list, [
      {
        kind: 'price_drop',
        item: item('90.00'),
        previousItem: item('100.00'),
        previousAt: new Date(T0 - 30 * HOUR),
        previousCheapest: '100.00',
        currentCheapest: '90.00',
        dropPercent: '10.00',
      },
    ])
  })

  it('does not fire at 9.99% or at 9.999%', () => {
    assert.deepEqual(insights(run(0, '90.01'), [run(-HOUR, '100.00')]), [])
    assert.deepEqual(insights(run(0, '90.001'), [run(-HOUR, '100')]), [])
  })

  it('compares against the lowest of the window, the earliest of equal ones', () => {
    const history = [run(-40 * HOUR, '110'), run(-20 * HOUR, '100.0'), run(-5 * HOUR, '100'), run(-HOUR, '105')]
    const drop = only(insights(run(0, '80'), history), 'price_drop')
    assert.equal(drop?.previousCheapest, '100.0')
    assert.deepEqual(drop?.previousAt, new Date(T0 - 20 * HOUR))
    assert.equal(drop?.dropPercent, '20.00')
    // 95 is 13.6% under 110 but only 5% under the window's lowest, 100.
    assert.deepEqual(insights(run(0, '95'), history), [])
  })

  it('includes a run due exactly one window before and excludes one a millisecond earlier', () => {
    assert.equal(only(insights(run(0, '50'), [run(-2 * DAY, '100')]), 'price_drop')?.dropPercent, '50.00')
    assert.deepEqual(insights(run(0, '50'), [run(-2 * DAY - 1, '100')]), [])
    // The cheaper run just outside the window does not hide the drop against the window.
    const drop = only(insights(run(0, '50'), [run(-2 * DAY - 1, '40'), run(-DAY, '100')]), 'price_drop')
    assert.equal(drop?.previousCheapest, '100')
  })

  it('follows a configured window and threshold', () => {
    const history = [run(-3 * HOUR, '100'), run(-30 * MINUTE, '120')]
    const rules = { windowMs: HOUR, dropPercent: '7.5' }
    assert.equal(only(insights(run(0, '111'), history, { rules }), 'price_drop')?.dropPercent, '7.50')
    assert.deepEqual(insights(run(0, '111.01'), history, { rules }), [])
  })

  it('ignores history runs due at or after the newest run', () => {
    const current = run(0, '90')
    assert.deepEqual(insights(current, [current, run(HOUR, '200')]), [])
    assert.equal(only(insights(current, [current, run(-HOUR, '100'), run(HOUR, '200')]), 'price_drop')?.previousCheapest, '100')
  })

  it('needs a run in the window that found something', () => {
    assert.deepEqual(insights(run(0, '10'), []), [])
    assert.deepEqual(insights(run(0, '10'), [run(-HOUR, null), run(-2 * HOUR, null)]), [])
    // Runs that found nothing are skipped, not taken as a price.
    assert.equal(only(insights(run(0, '10'), [run(-2 * HOUR, '20'), run(-HOUR, null)]), 'price_drop')?.previousCheapest, '20')
  })

  it('gives nothing when the newest run found nothing', () => {
    assert.deepEqual(insights(run(0, null), [run(-HOUR, '100')], { alert: { max_price: '500', currency: null } }), [])
  })

  it('compares only prices in the same currency', () => {
    assert.deepEqual(insights(run(0, '50', 'USD'), [run(-HOUR, '100', 'EUR')]), [])
    const drop = only(
      insights(run(0, '90', 'USD'), [run(-2 * HOUR, '100', 'USD'), run(-HOUR, '60', 'EUR')]),
      'price_drop',
    )
    assert.equal(drop?.previousCheapest, '100')
    assert.equal(drop?.previousItem.currency, 'USD')
  })

  it('never divides by a previous price of 0, and a fall to 0 is 100%', () => {
    assert.deepEqual(insights(run(0, '0'), [run(-HOUR, '0.00')]), [])
    assert.deepEqual(insights(run(0, '0'), [run(-HOUR, '0')], { rules: { dropPercent: '0.01' } }), [])
    assert.equal(only(insights(run(0, '0.00'), [run(-HOUR, '12.34')]), 'price_drop')?.dropPercent, '100.00')
    assert.equal(only(insights(run(0, '0'), [run(-HOUR, '5')], { rules: { dropPercent: '100' } }), 'price_drop')?.dropPercent, '100.00')
  })

  it('reports the drop rounded half up to 2 decimals, from the exact quotient', () => {
    const dropOf = (previous: string, current: string) =>
      only(insights(run(0, current), [run(-HOUR, previous)], { rules: { dropPercent: '0.01' } }), 'price_drop')?.dropPercent
    assert.equal(dropOf('3', '2'), '33.33')
    assert.equal(dropOf('3', '1'), '66.67')
    assert.equal(dropOf('200', '179.99'), '10.01') // exactly 10.005
    assert.equal(dropOf('10000000', '8999500.01'), '10.00') // 10.0049999
    // 10.00499…9 with 21 nines: a quotient rounded to 20 places first would say 10.01.
    assert.equal(dropOf('10000000000000000000000000', '8999500000000000000000001'), '10.00')
    assert.equal(dropOf('100000000000000000000.00', '89999999999999999999.99'), '10.00')
  })

  it('says a drop once: the next run compares against the new low', () => {
    const series = [run(-2 * HOUR, '100'), run(-HOUR, '80'), run(0, '80'), run(HOUR, '75')]
    assert.deepEqual(replay(series), ['', 'price_drop', '', ''])
  })
})

describe('flat', () => {
  it('fires when the cheapest price has stayed the same for exactly two days', () => {
    const series = steady(-2 * DAY, 0, 12 * HOUR, '10.00')
    const current = series.pop()!
    assert.deepEqual(insights(current, series), [
      {
        kind: 'flat',
        price: '10.00',
        currency: 'USD',
        item: item('10.00'),
        since: new Date(T0 - 2 * DAY),
        sinceDays: 2,
        sinceMs: 2 * DAY,
        runs: 5,
      },
    ])
  })

  it('does not fire a millisecond short of two days', () => {
    assert.deepEqual(insights(run(0, '10'), [run(-2 * DAY + 1, '10'), run(-DAY, '10')]), [])
  })

  it('is said once per stretch, on the run where it reaches two days', () => {
    const series = steady(-3 * DAY, 2 * DAY, 6 * HOUR, '10')
    const said = replay(series)
    assert.deepEqual(
      said.flatMap((kinds, i) => (kinds === '' ? [] : [[i, kinds]])),
      [[8, 'flat']],
    )
    assert.deepEqual(series[8]?.dueAt, new Date(T0 - DAY))
  })

  it('starts over on a new price, which can be flat again two days later', () => {
    const series = [...steady(-5 * DAY, -2 * DAY - HOUR, HOUR, '10'), ...steady(-2 * DAY, DAY, HOUR, '9.50')]
    const said = replay(series)
    const flats = series.filter((_, i) => said[i]?.includes('flat')).map((r) => r.dueAt.getTime() - T0)
    assert.deepEqual(flats, [-5 * DAY + 2 * DAY, 0])
  })

  it('is broken by a changed price, another currency or a run that found nothing', () => {
    const tail = steady(-36 * HOUR, -HOUR, HOUR, '10')
    assert.deepEqual(insights(run(0, '10'), [run(-2 * DAY, '10'), run(-40 * HOUR, '10.01'), ...tail]), [])
    assert.deepEqual(insights(run(0, '10'), [run(-2 * DAY, '10'), run(-40 * HOUR, '10', 'EUR'), ...tail]), [])
    assert.deepEqual(insights(run(0, '10'), [run(-2 * DAY, '10'), run(-40 * HOUR, null), ...tail]), [])
    // The same history without the odd run is flat.
    assert.equal(only(insights(run(0, '10'), [run(-2 * DAY, '10'), ...tail]), 'flat')?.runs, 38)
  })

  it('is not broken by a gap between runs, and says how many runs it rests on', () => {
    const flat = only(insights(run(0, '10'), [run(-2 * DAY, '10')]), 'flat')
    assert.equal(flat?.runs, 2)
    assert.deepEqual(flat?.since, new Date(T0 - 2 * DAY))
  })

  it('counts the stretch from its first run, however long before it reached the threshold', () => {
    // Last seen three days ago, then nothing until now: flat since three days, said now.
    const flat = only(insights(run(0, '10'), [run(-3 * DAY, '10')]), 'flat')
    assert.equal(flat?.sinceDays, 3)
    // Already flat at the run before: not said again.
    assert.deepEqual(insights(run(0, '10'), [run(-3 * DAY, '10'), run(-HOUR, '10')]), [])
  })

  it('takes equal amounts written differently as the same price, and reports the newest', () => {
    const flat = only(insights(run(0, '10.0'), [run(-2 * DAY, '10'), run(-DAY, '10.000')]), 'flat')
    assert.equal(flat?.price, '10.0')
  })

  it('holds for a price of 0 and follows a configured span', () => {
    assert.equal(only(insights(run(0, '0'), [run(-2 * DAY, '0.00')]), 'flat')?.price, '0')
    const rules = { flatMs: HOUR }
    assert.equal(only(insights(run(0, '5'), [run(-HOUR, '5')], { rules }), 'flat')?.sinceDays, 0)
    assert.deepEqual(insights(run(0, '5'), [run(-HOUR + 1, '5')], { rules }), [])
  })
})

describe('under_max', () => {
  const alert: Alert = { max_price: '50.00', currency: null }

  it('fires when the first run finds an item at or under the maximum', () => {
    assert.deepEqual(insights(run(0, '49.99'), [], { alert }), [
      { kind: 'under_max', item: item('49.99'), maxPrice: '50.00' },
    ])
    assert.equal(only(insights(run(0, '50'), [], { alert }), 'under_max')?.maxPrice, '50.00')
    assert.deepEqual(insights(run(0, '50.01'), [], { alert }), [])
  })

  it('fires when the run before was over the maximum or found nothing, not when it was under', () => {
    assert.ok(only(insights(run(0, '45'), [run(-HOUR, '51')], { alert }), 'under_max'))
    assert.ok(only(insights(run(0, '45'), [run(-HOUR, null)], { alert }), 'under_max'))
    assert.deepEqual(insights(run(0, '45'), [run(-HOUR, '40')], { alert }), [])
    // Only the run just before counts, wherever it is in the history given.
    const history = [run(-HOUR, '60'), run(-3 * HOUR, '20'), run(-2 * HOUR, '30')]
    assert.ok(only(insights(run(0, '45'), history, { alert }), 'under_max'))
  })

  it('is said again when the price goes back over and comes under again', () => {
    const series = [run(0, '52'), run(HOUR, '50'), run(2 * HOUR, '49'), run(3 * HOUR, '51'), run(4 * HOUR, '48')]
    assert.deepEqual(replay(series, { alert }), ['', 'under_max', '', '', 'under_max'])
  })

  it("with an alert currency, counts only items in it", () => {
    const usd: Alert = { max_price: '50', currency: 'USD' }
    assert.deepEqual(insights(run(0, '10', 'EUR'), [], { alert: usd }), [])
    // An item under the number but in another currency before does not count as under.
    assert.ok(only(insights(run(0, '10', 'USD'), [run(-HOUR, '10', 'EUR')], { alert: usd }), 'under_max'))
  })

  it("without an alert currency, reads the maximum in each item's currency", () => {
    assert.ok(only(insights(run(0, '10', 'EUR'), [], { alert }), 'under_max'))
    assert.deepEqual(insights(run(0, '10', 'USD'), [run(-HOUR, '10', 'EUR')], { alert }), [])
  })

  it('needs a maximum, and takes one of 0', () => {
    assert.deepEqual(insights(run(0, '0'), [], { alert: NO_MAX }), [])
    assert.ok(only(insights(run(0, '0.00'), [run(-HOUR, '0.01')], { alert: { max_price: '0', currency: null } }), 'under_max'))
  })
})

describe('findInsights', () => {
  it('lists under_max before price_drop', () => {
    const list = insights(run(0, '45'), [run(-HOUR, '60')], { alert: { max_price: '50', currency: null } })
    assert.deepEqual(
      list.map((insight) => insight.kind),
      ['under_max', 'price_drop'],
    )
  })

  it('refuses malformed input, naming the field', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => insights(run(0, 'abc'), []), /^current\.cheapest\.total must be a non-negative decimal amount.*"abc"/],
      [() => insights(run(0, '1'), [run(-1, '1'), run(-2, '-1')]), /^history\[1\]\.cheapest\.total .*"-1"/],
      [() => insights(run(0, '1'), [run(-1, '1e3')]), /^history\[0\]\.cheapest\.total .*"1e3"/],
      [() => insights(run(0, '1,50'), []), /^current\.cheapest\.total .*"1,50"/],
      [() => insights(run(0, '1'), [{ dueAt: new Date(Number.NaN), cheapest: null }]), /^history\[0\]\.dueAt must be a valid Date/],
      [() => insights(run(0, '1'), [], { alert: { max_price: '€5', currency: null } }), /^alert\.max_price .*"€5"/],
      [() => insights(run(0, '1'), [], { rules: { dropPercent: '0' } }), /^rules\.dropPercent .*"0"/],
      [() => insights(run(0, '1'), [], { rules: { dropPercent: '100.5' } }), /^rules\.dropPercent .*"100\.5"/],
      [() => insights(run(0, '1'), [], { rules: { windowMs: 0 } }), /^rules\.windowMs must be a whole number of ms above 0, got 0/],
      [() => insights(run(0, '1'), [], { rules: { flatMs: 1.5 } }), /^rules\.flatMs .*1\.5/],
    ]
    for (const [call, message] of cases) assert.throws(call, (err: unknown) => err instanceof RangeError && message.test(err.message))
  })

  it('takes its rules from the configuration', () => {
    assert.deepEqual(insightRulesFromConfig(loadConfig({})), { dropPercent: '10', windowMs: 2 * DAY, flatMs: 2 * DAY })
    const config = loadConfig({ INSIGHT_DROP_PERCENT: '12.5', INSIGHT_WINDOW_MS: '3600000', INSIGHT_FLAT_MS: '7200000' })
    assert.deepEqual(insightRulesFromConfig(config), { dropPercent: '12.5', windowMs: HOUR, flatMs: 2 * HOUR })
  })
})

describe('insightAllowed', () => {
  const at = new Date(T0)

  it('allows the first insight and one a full interval after the last', () => {
    assert.equal(insightAllowed(null, at, DAY), true)
    assert.equal(insightAllowed(new Date(T0 - DAY), at, DAY), true)
    assert.equal(insightAllowed(new Date(T0 - 3 * DAY), at, DAY), true)
  })

  it('refuses one within the interval, or after a last one recorded in the future', () => {
    assert.equal(insightAllowed(new Date(T0 - DAY + 1), at, DAY), false)
    assert.equal(insightAllowed(at, at, DAY), false)
    assert.equal(insightAllowed(new Date(T0 + HOUR), at, DAY), false)
  })

  it('allows everything with an interval of 0', () => {
    assert.equal(insightAllowed(at, at, 0), true)
    assert.equal(insightAllowed(new Date(T0 + HOUR), at, 0), true)
  })

  it('refuses a malformed interval or date', () => {
    assert.throws(() => insightAllowed(null, at, -1), /minIntervalMs must be a whole number of ms >= 0, got -1/)
    assert.throws(() => insightAllowed(null, new Date('x'), DAY), /at must be a valid Date/)
    assert.throws(() => insightAllowed(new Date('x'), at, DAY), /lastInsightAt must be a valid Date/)
  })
})

/** Decimal text of an integer number of cents, sometimes without its zero cents ("12" for 1200). */
function centsText(cents: bigint, short: boolean): string {
  const whole = cents / 100n
  const fraction = cents % 100n
  return short && fraction === 0n ? String(whole) : `${whole}.${String(fraction).padStart(2, '0')}`
}

/** Cents of a decimal text with at most 2 decimals, read without any decimal library. */
function textCents(text: string): bigint {
  const [whole, fraction = ''] = text.split('.')
  return BigInt(whole!) * 100n + BigInt(fraction.padEnd(2, '0'))
}

describe('the drop rule on random histories', () => {
  const WINDOW = 2 * DAY
  // Offsets crowd the window's edges and the newest run's own time, where mistakes hide.
  const offset = fc.oneof(
    fc.integer({ min: -3 * DAY, max: HOUR }),
    fc.constantFrom(-WINDOW - 1, -WINDOW, -WINDOW + 1, -1, 0, 1),
  )
  // Small amounts make exact thresholds common (10 → 9 is exactly 10%); large ones test size.
  const cents = fc.oneof(fc.bigInt({ min: 0n, max: 40n }), fc.bigInt({ min: 0n, max: 10n ** 18n }))
  const found = fc.record({ cents, currency: fc.constantFrom('USD', 'USD', 'EUR'), short: fc.boolean() })
  const runArb = fc.record({ offset, found: fc.option(found, { nil: null }) })
  // The threshold in hundredths of a percent: 0.01% to 100%.
  const basisPoints = fc.oneof(fc.constantFrom(1000n, 10000n, 3333n, 2500n), fc.bigInt({ min: 1n, max: 10000n }))

  it('fires exactly when (previous - current) * 10000 >= threshold * previous, in integer cents', () => {
    fc.assert(
      fc.property(
        fc.array(runArb, { maxLength: 25 }),
        fc.record({ cents, currency: fc.constantFrom('USD', 'EUR'), short: fc.boolean() }),
        basisPoints,
        (history, current, bp) => {
          const dropPercent = centsText(bp, true)
          const toRun = (r: { offset: number; found: { cents: bigint; currency: string; short: boolean } | null }) =>
            ({
              dueAt: new Date(T0 + r.offset),
              cheapest: r.found && item(centsText(r.found.cents, r.found.short), r.found.currency),
            }) satisfies RunSummary
          const list = findInsights({
            alert: NO_MAX,
            current: toRun({ offset: 0, found: current }),
            history: history.map(toRun),
            rules: { dropPercent, windowMs: WINDOW, flatMs: 2 * DAY },
          })
          const drop = list.find((insight) => insight.kind === 'price_drop')

          // The oracle: the same rule, on integer cents and BigInt only.
          const window = history.filter(
            (r) => r.offset >= -WINDOW && r.offset < 0 && r.found !== null && r.found.currency === current.currency,
          )
          const previous = window.reduce<bigint | null>((low, r) => (low === null || r.found!.cents < low ? r.found!.cents : low), null)
          const fires = previous !== null && previous > 0n && (previous - current.cents) * 10000n >= bp * previous
          assert.equal(drop !== undefined, fires, `${dropPercent}%: ${previous} -> ${current.cents}`)
          if (drop === undefined || previous === null) return
          const fall = (previous - current.cents) * 10000n
          const hundredths = (2n * fall + previous) / (2n * previous) // half up
          assert.equal(drop.dropPercent, centsText(hundredths, false))
          assert.equal(textCents(drop.previousCheapest), previous)
          assert.equal(textCents(drop.currentCheapest), current.cents)
          assert.equal(drop.item.currency, current.currency)
          assert.equal(drop.previousItem.currency, current.currency)
        },
      ),
      { numRuns: 3000 },
    )
  })

  it('never says a flat market together with a drop or a new low under the maximum', () => {
    const timeline = fc.array(
      fc.record({ step: fc.integer({ min: 1, max: 18 * HOUR }), found: fc.option(fc.constantFrom('9', '10', '10.00', '11'), { nil: null }) }),
      { minLength: 1, maxLength: 40 },
    )
    fc.assert(
      fc.property(timeline, (steps) => {
        let at = 0
        const series = steps.map((s) => {
          at += s.step
          return run(at, s.found)
        })
        const said = replay(series, { alert: { max_price: '10', currency: null } })
        for (const kinds of said) {
          if (kinds.includes('flat')) assert.equal(kinds, 'flat')
        }
      }),
      { numRuns: 500 },
    )
  })
})
