/**
 * The items the eBay simulation sells: deterministic for a seed, with prices that move
 * over simulated time, so that a test can jump to a moment where the cheapest price
 * drops, rises or stays the same, and know in advance what a search answers.
 *
 * Each phrase (trimmed, lowercased, spaces collapsed) has 30 to 200 items whose ids,
 * titles, base prices, shipping and pictures come from a hash of (seed, phrase, index).
 * Time is cut into steps (a simulated hour by default): step = floor(now × timeScale /
 * stepMs). Prices follow a random walk per phrase: at each step the market of that phrase
 * is `flat` (45%: no price moves), `drift` (35%: each item moves by -3% to +3%), `drop`
 * (10%: every item loses 20% to 40%) or `rise` (10%: every item gains 30% to 60%), and
 * every `epochSteps` steps (a simulated week) the listings are `restock`ed: every price is
 * back to its base (in between, a price stays within 0.2 and 5 times its base). A step's
 * prices depend only on (seed, phrase, step), and walking from the start of the week keeps
 * that cheap: the walk of the last step asked is kept, so moving forward costs one step.
 */
import { createHash } from 'node:crypto'
import type { EbayItem } from './ebay.client.ts'

/** What happened to a phrase's prices at a step, compared with the step before. */
export type MarketMove = 'restock' | 'flat' | 'drift' | 'drop' | 'rise'

/** Shipping of a simulated item: none stated, a calculated one (no cost), or fixed costs. */
export type SimShipping = { type: 'none' } | { type: 'calculated' } | { type: 'fixed'; costsCents: number[] }

/** One simulated item at one step. */
export interface SimItem {
  /** Position in the phrase's catalogue (the "best match" order). */
  index: number
  /** Browse API id, `v1|<12 digits>|0`. */
  itemId: string
  /** The 12 digits: the legacy id in the page URL. */
  legacyId: string
  title: string
  /** Price at the step, in hundredths of the currency. */
  priceCents: number
  currency: string
  shipping: SimShipping
  /** Null for an item without a picture. */
  imageUrl: string | null
  condition: string
  conditionId: string
  seller: { username: string; feedbackPercentage: string; feedbackScore: number }
}

/** Options of {@link createEbayCatalogue}. */
export interface EbayCatalogueOptions {
  /** Seed of every item and every price move. @defaultValue 1 */
  seed?: number
  /** Simulated milliseconds per real millisecond (60: a simulated hour per real minute). @defaultValue 1 */
  timeScale?: number
  /** Simulated length of one price step, in ms. @defaultValue 3600000 (an hour) */
  stepMs?: number
  /** Steps between two restocks (every price back to its base). @defaultValue 168 (a week of hours) */
  epochSteps?: number
}

/** Options of {@link EbayCatalogue.cheapest} and {@link EbayCatalogue.findStep}. */
export interface CheapestOptions {
  /** The step; or `now` (real epoch ms, converted with the time scale). @defaultValue the step of Date.now() */
  step?: number
  now?: number
  /** Items kept, as the client's `limit`. @defaultValue 20 */
  limit?: number
  /** Items asked of eBay, as the client's `pageSize`. @defaultValue limit */
  pageSize?: number
  /** Only items in this currency, as the client's `currency`. @defaultValue any */
  currency?: string
  /** The marketplace searched: its currency is the items' usual one. @defaultValue EBAY_US */
  marketplaceId?: string
}

/** A search of the simulated catalogue. */
export interface CatalogueSearch {
  step: number
  marketplaceId: string
  /** `price`, `-price`; anything else is the catalogue order (best match). */
  sort?: string
  /** Only items priced in this currency. */
  currency?: string
  offset: number
  limit: number
}

/** The deterministic catalogue. */
export interface EbayCatalogue {
  readonly seed: number
  readonly timeScale: number
  readonly stepMs: number
  readonly epochSteps: number
  /** The step at real time `nowMs`. */
  stepAt(nowMs: number): number
  /** A real time (epoch ms) in the middle of `step`: set a test clock to it. */
  timeOfStep(step: number): number
  /** How the phrase's prices moved from `step - 1` to `step`. */
  moveAt(phrase: string, step: number): MarketMove
  /** Every item of the phrase at `step`, in catalogue order. */
  items(phrase: string, step: number, marketplaceId?: string): SimItem[]
  /** One page of a search, and how many items match in all. */
  search(phrase: string, search: CatalogueSearch): { total: number; items: SimItem[] }
  /**
   * What the client's search returns at a step with the same options: the `limit`
   * cheapest by price plus cheapest shipping, among the `pageSize` cheapest by price
   * (the page eBay sends), ties by itemId. Computed in integer cents, apart from the client.
   */
  cheapest(phrase: string, options?: CheapestOptions): EbayItem[]
  /**
   * The first step after `from` where, compared with the step before it, the cheapest
   * total of {@link cheapest} `drop`s by more than 10%, `rise`s by more than 10%, or stays
   * `flat` (the same items at the same totals). Throws when none comes within `maxSteps`.
   */
  findStep(phrase: string, change: 'drop' | 'rise' | 'flat', options: Omit<CheapestOptions, 'step' | 'now'> & { from: number; maxSteps?: number }): number
}

/** The currency of each marketplace the simulation knows; others are refused. */
export const MARKETPLACE_CURRENCIES: Readonly<Record<string, string>> = {
  EBAY_US: 'USD',
  EBAY_MOTORS_US: 'USD',
  EBAY_GB: 'GBP',
  EBAY_DE: 'EUR',
  EBAY_FR: 'EUR',
  EBAY_IT: 'EUR',
  EBAY_ES: 'EUR',
  EBAY_AT: 'EUR',
  EBAY_NL: 'EUR',
  EBAY_IE: 'EUR',
  EBAY_CA: 'CAD',
  EBAY_AU: 'AUD',
  EBAY_CH: 'CHF',
}
const FOREIGN_CURRENCIES = ['USD', 'GBP', 'EUR', 'CAD', 'AUD']

/** The catalogue key of a phrase: trimmed, lowercased, spaces collapsed. */
export function normalisePhrase(phrase: string): string {
  return phrase.trim().toLowerCase().replace(/\s+/g, ' ')
}

/** murmur3's finaliser: spreads every input bit over the output. */
function fmix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A 32-bit hash of 32-bit values. */
function hash(...values: number[]): number {
  let h = 0x811c9dc5
  for (const value of values) h = fmix(Math.imul(h ^ (value >>> 0), 0x01000193) ^ 0x9e3779b9)
  return h
}

/** A number in [0, 1) from a hash. */
const unit = (h: number) => h / 4294967296

/** A step as two 32-bit halves, for the hash (steps pass 2^32 with a large time scale). */
const stepParts = (step: number) => [step % 4294967296, Math.floor(step / 4294967296)] as const

const pick = <T>(list: readonly T[], h: number): T => list[h % list.length]!

const LEADS = ['New', 'Vintage', 'Genuine', 'Refurbished', 'Lot of 2', 'Portable', 'Professional', 'Mini', 'Deluxe', 'Compact', 'Original', 'Used']
const TAILS = ['Free Shipping', '2024 Model', 'with Case', 'Black', 'Silver', 'Blue', 'Fast Dispatch', 'Bundle', 'Tested & Working', 'OEM', 'Sealed', 'Red']
const CONDITIONS = [
  ['New', '1000'],
  ['Open box', '1500'],
  ['Seller refurbished', '2500'],
  ['Used', '3000'],
] as const
const MOVE_TAGS = { regime: 9, factor: 10 }

/** The static part of an item: everything but its price at a step. */
interface BaseItem extends Omit<SimItem, 'priceCents' | 'currency'> {
  baseCents: number
  /** Priced in another currency than the marketplace's: which one of the foreign list (by hash). */
  foreign: number | null
}

const titleCase = (text: string) => text.replace(/(^|\s)(\S)/g, (_, space: string, c: string) => `${space}${c.toUpperCase()}`)

/** Formats cents as a 2-decimal string. */
export function formatCents(cents: bigint | number): string {
  const value = BigInt(cents)
  const negative = value < 0n
  const abs = negative ? -value : value
  return `${negative ? '-' : ''}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`
}

/** Creates the catalogue. */
export function createEbayCatalogue(options: EbayCatalogueOptions = {}): EbayCatalogue {
  const seed = options.seed ?? 1
  const timeScale = options.timeScale ?? 1
  const stepMs = options.stepMs ?? 3_600_000
  const epochSteps = options.epochSteps ?? 168
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError('seed must be a whole number from 0 to 2^32 - 1')
  if (!(timeScale > 0 && timeScale <= 1_000_000)) throw new RangeError('timeScale must be above 0 and at most 1000000')
  if (!Number.isInteger(stepMs) || stepMs < 1000) throw new RangeError('stepMs must be a whole number of at least 1000')
  if (!Number.isInteger(epochSteps) || epochSteps < 2) throw new RangeError('epochSteps must be a whole number of at least 2')

  /** Per phrase: its hash, items, and the walk of the last step asked. Least recently used first. */
  const phrases = new Map<string, { key: number; base: BaseItem[]; walk: { step: number; factors: Float64Array } | undefined }>()
  const MAX_PHRASES = 1024

  const phraseState = (phrase: string) => {
    const name = normalisePhrase(phrase)
    let state = phrases.get(name)
    if (state) {
      phrases.delete(name)
      phrases.set(name, state)
      return state
    }
    const key = createHash('sha256').update(`${seed}\n${name}`).digest().readUInt32BE(0)
    state = { key, base: baseItems(name, key), walk: undefined }
    phrases.set(name, state)
    if (phrases.size > MAX_PHRASES) phrases.delete(phrases.keys().next().value!)
    return state
  }

  const baseItems = (name: string, key: number): BaseItem[] => {
    const count = 30 + (hash(key, 1) % 171)
    const words = titleCase(name)
    return Array.from({ length: count }, (_, index) => {
      const h = (tag: number) => hash(key, tag, index)
      const legacyId = `${1 + (h(3) % 9)}${String(h(4) % 100_000_000).padStart(8, '0')}${String(index).padStart(3, '0')}`
      // Log-uniform from $2 to $1500: many cheap listings, a few dear ones.
      const baseCents = Math.round(200 * Math.exp(unit(h(5)) * Math.log(750)))
      const shippingDraw = unit(h(7))
      let shipping: SimShipping
      if (shippingDraw < 0.35) shipping = { type: 'none' }
      else if (shippingDraw < 0.6) shipping = { type: 'fixed', costsCents: [0] }
      else if (shippingDraw < 0.65) shipping = { type: 'calculated' }
      else {
        const cost = Math.max(99, Math.round(baseCents * (0.02 + 0.13 * unit(h(8)))))
        // Some list an expedited option first: the cheapest is not always the first.
        shipping = { type: 'fixed', costsCents: unit(h(11)) < 0.3 ? [cost + 500 + (h(12) % 1000), cost] : [cost] }
      }
      const [condition, conditionId] = pick(CONDITIONS, h(13))
      const title = `${pick(LEADS, h(14))} ${words} ${pick(TAILS, h(15))}`.slice(0, 80)
      return {
        index,
        itemId: `v1|${legacyId}|0`,
        legacyId,
        title,
        baseCents,
        foreign: unit(h(6)) < 0.05 ? h(16) : null,
        shipping,
        imageUrl: unit(h(17)) < 0.9 ? `https://i.ebayimg.com/images/g/${h(18).toString(36)}${h(19).toString(36)}/s-l225.jpg` : null,
        condition,
        conditionId,
        seller: {
          username: `seller_${h(20) % 100_000}`,
          feedbackPercentage: (95 + unit(h(21)) * 5).toFixed(1),
          feedbackScore: h(22) % 50_000,
        },
      }
    })
  }

  const moveOf = (key: number, step: number): MarketMove => {
    if (step % epochSteps === 0) return 'restock'
    const u = unit(hash(key, MOVE_TAGS.regime, ...stepParts(step)))
    return u < 0.45 ? 'flat' : u < 0.8 ? 'drift' : u < 0.9 ? 'drop' : 'rise'
  }

  /** Each item's price factor at `step`: walked from the restock, or on from the last walk. */
  const factorsAt = (state: ReturnType<typeof phraseState>, step: number): Float64Array => {
    const epochStart = step - (step % epochSteps)
    const last = state.walk
    let from: number
    let factors: Float64Array
    if (last && last.step <= step && last.step >= epochStart) {
      if (last.step === step) return last.factors
      from = last.step
      factors = Float64Array.from(last.factors)
    } else {
      from = epochStart
      factors = new Float64Array(state.base.length).fill(1)
    }
    for (let s = from + 1; s <= step; s++) {
      const move = moveOf(state.key, s)
      if (move === 'flat') continue
      const parts = stepParts(s)
      for (let i = 0; i < factors.length; i++) {
        const u = unit(hash(state.key, MOVE_TAGS.factor, i, ...parts))
        const change = move === 'drift' ? 0.97 + 0.06 * u : move === 'drop' ? 0.6 + 0.2 * u : 1.3 + 0.3 * u
        factors[i] = Math.min(5, Math.max(0.2, factors[i]! * change))
      }
    }
    state.walk = { step, factors }
    return factors
  }

  const items = (phrase: string, step: number, marketplaceId = 'EBAY_US'): SimItem[] => {
    if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`step must be a whole number of at least 0 (got ${step})`)
    const home = MARKETPLACE_CURRENCIES[marketplaceId]
    if (home === undefined) throw new RangeError(`unknown marketplace ${marketplaceId}`)
    const state = phraseState(phrase)
    const factors = factorsAt(state, step)
    const foreignList = FOREIGN_CURRENCIES.filter((c) => c !== home)
    return state.base.map(({ baseCents, foreign, ...item }) => ({
      ...item,
      priceCents: Math.max(1, Math.round(baseCents * factors[item.index]!)),
      currency: foreign === null ? home : pick(foreignList, foreign),
    }))
  }

  const byPrice = (a: SimItem, b: SimItem) => a.priceCents - b.priceCents || (a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0)

  const search = (phrase: string, query: CatalogueSearch) => {
    let matching = items(phrase, query.step, query.marketplaceId)
    if (query.currency !== undefined) matching = matching.filter((item) => item.currency === query.currency)
    if (query.sort === 'price') matching.sort(byPrice)
    else if (query.sort === '-price') matching.sort((a, b) => byPrice(b, a))
    return { total: matching.length, items: matching.slice(query.offset, query.offset + query.limit) }
  }

  const stepAt = (nowMs: number) => Math.floor((nowMs * timeScale) / stepMs)

  const cheapest = (phrase: string, options: CheapestOptions = {}): EbayItem[] => {
    const step = options.step ?? stepAt(options.now ?? Date.now())
    const limit = options.limit ?? 20
    const page = search(phrase, {
      step,
      marketplaceId: options.marketplaceId ?? 'EBAY_US',
      sort: 'price',
      ...(options.currency !== undefined && { currency: options.currency }),
      offset: 0,
      limit: options.pageSize ?? limit,
    }).items
    const ranked = page.map((item) => {
      const costs = item.shipping.type === 'fixed' ? item.shipping.costsCents : []
      const shipping = costs.length > 0 ? BigInt(Math.min(...costs)) : null
      const total = BigInt(item.priceCents) + (shipping ?? 0n)
      return {
        total,
        item: {
          itemId: item.itemId,
          title: item.title,
          price: formatCents(item.priceCents),
          currency: item.currency,
          shipping: shipping === null ? null : formatCents(shipping),
          total: formatCents(total),
          itemWebUrl: `https://www.ebay.com/itm/${item.legacyId}`,
          imageUrl: item.imageUrl,
        },
      }
    })
    ranked.sort((a, b) => (a.total < b.total ? -1 : a.total > b.total ? 1 : a.item.itemId < b.item.itemId ? -1 : 1))
    return ranked.slice(0, limit).map((r) => r.item)
  }

  return {
    seed,
    timeScale,
    stepMs,
    epochSteps,
    stepAt,
    timeOfStep: (step) => Math.ceil(((step + 0.5) * stepMs) / timeScale),
    moveAt: (phrase, step) => moveOf(phraseState(phrase).key, step),
    items,
    search,
    cheapest,
    findStep(phrase, change, options) {
      const { from, maxSteps = 10_000, ...rest } = options
      const minCents = (list: EbayItem[]) => (list.length === 0 ? undefined : BigInt(list[0]!.total.replace('.', '')))
      let before = cheapest(phrase, { ...rest, step: from })
      for (let step = from + 1; step <= from + maxSteps; step++) {
        const now = cheapest(phrase, { ...rest, step })
        const [was, is] = [minCents(before), minCents(now)]
        if (was !== undefined && is !== undefined) {
          if (change === 'drop' && is * 10n < was * 9n) return step
          if (change === 'rise' && is * 10n > was * 11n) return step
          if (change === 'flat' && JSON.stringify(now) === JSON.stringify(before)) return step
        }
        before = now
      }
      throw new Error(`no ${change} of the cheapest price of ${JSON.stringify(phrase)} within ${maxSteps} steps after ${from}`)
    },
  }
}
