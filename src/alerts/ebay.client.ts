/**
 * The client of eBay's Browse API for product alerts: an OAuth application token (client
 * credentials grant) and `GET /buy/browse/v1/item_summary/search`, over one pooled undici
 * Agent, every request bounded by the timeout.
 *
 * Everything eBay answers is outside input and checked: a body that is not JSON or not a
 * search answer is an {@link EbayError} `bad_answer`; a single item that cannot be used
 * (no price, a price that is not a decimal, no id, title or page URL, another currency)
 * is left out and listed in `skipped` with its reason, so one broken listing never costs
 * the run. Money is never a float: prices stay decimal strings and are added and compared
 * with big.js, exactly.
 *
 * The token is shared: one token request at a time (concurrent searches wait for the same
 * one), cached until a little before it expires, and fetched again once when a search is
 * answered 401 (eBay revoked or expired it early); a second 401 is `auth_failed`.
 */
import Big from 'big.js'
import { Agent, request } from 'undici'
import type { Logger } from '../platform/logger.ts'
import { quote } from '../platform/quote.ts'

/** One item of a search, as product alerts keep it. */
export interface EbayItem {
  /** eBay's item id, such as `v1|385462201428|0`. */
  itemId: string
  title: string
  /** Exact decimal string as eBay sent it, normalised (no exponent, no leading zeros). */
  price: string
  /** ISO 4217 code of the price (and of the shipping). */
  currency: string
  /** Cheapest shipping cost when `shippingOptions` gives one, else null (unknown or calculated later). */
  shipping: string | null
  /** `price + shipping`, exact (no shipping counts as 0), with the larger of their decimal places. */
  total: string
  /** The item's page on eBay; http(s) only. */
  itemWebUrl: string
  /** The item's main picture; http(s) only, null when eBay gave none (or not a usable one). */
  imageUrl: string | null
}

/** An item of eBay's answer that was left out, and why. */
export interface EbaySkippedItem {
  /** Its id when it had a usable one. */
  itemId: string | null
  reason: string
}

/** What a search found. */
export interface EbaySearchResult {
  /** How many items eBay says match the phrase (all pages). */
  total: number
  /** The cheapest items by total (price + shipping), cheapest first, ties by itemId. */
  items: EbayItem[]
  /** Items of the answer that could not be used. */
  skipped: EbaySkippedItem[]
}

/** Why a call to eBay failed. */
export type EbayErrorCode = 'rate_limited' | 'unavailable' | 'auth_failed' | 'bad_answer' | 'bad_request'

/** Codes worth trying again later, as they are. */
const TRANSIENT_CODES: ReadonlySet<EbayErrorCode> = new Set([
  'rate_limited',
  'unavailable',
  // A garbled or truncated answer comes from a proxy, a deploy or a network hiccup far
  // more often than from eBay changing its format; asking again later usually works, and
  // a format that really changed fails every retry and ends as a failed job anyway.
  'bad_answer',
])

/** A failed call to eBay: what kind of failure, whether retrying can help, and when to retry. */
export class EbayError extends Error {
  override name = 'EbayError'
  /** What went wrong. */
  readonly code: EbayErrorCode
  /** True when asking again later can work (rate limited, unavailable, garbled answer). */
  readonly transient: boolean
  /** The HTTP status eBay answered, null when there was no answer. */
  readonly status: number | null
  /** For `rate_limited`: how long eBay asked us to wait (Retry-After), else null. */
  readonly retryAfterMs: number | null
  /** eBay's `errorId` of its first error, when it sent its error shape. */
  readonly errorId: number | null
  constructor(
    code: EbayErrorCode,
    message: string,
    options: { status?: number | null; retryAfterMs?: number | null; errorId?: number | null; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.transient = TRANSIENT_CODES.has(code)
    this.status = options.status ?? null
    this.retryAfterMs = options.retryAfterMs ?? null
    this.errorId = options.errorId ?? null
  }
}

/** Options of {@link createEbayClient}. */
export interface EbayClientOptions {
  /** eBay's base URL: https://api.ebay.com, https://api.sandbox.ebay.com, or the simulation's. */
  baseUrl: string
  /** The application's client id (App ID). */
  clientId: string
  /** The application's client secret (Cert ID). */
  clientSecret: string
  /** The marketplace searched, sent as `X-EBAY-C-MARKETPLACE-ID` (EBAY_US, EBAY_GB, ...). */
  marketplaceId: string
  /** Longest one request (token or search, connection to last byte) may take, in ms. */
  timeoutMs: number
  /** Logger; the client takes a child. @defaultValue none */
  log?: Logger
  /** Connections kept open to eBay at most; more concurrent requests wait for one. @defaultValue 32 */
  connections?: number
  /** The clock (epoch ms) deciding when the cached token is old; tests move it. @defaultValue Date.now */
  now?: () => number
}

/** Per-search options of {@link EbayClient.search}. */
export interface EbaySearchOptions {
  /** How many of the cheapest items to keep (1 to 200). @defaultValue 20 */
  limit?: number
  /**
   * How many items to ask eBay for (`limit` to 200). eBay's `sort=price` orders by price;
   * asking for more than `limit` lets an item with free shipping beat one whose shipping
   * makes it dearer although its price is lower. @defaultValue limit
   */
  pageSize?: number
  /**
   * Only items priced in this ISO 4217 currency (`filter=priceCurrency:XXX`); any other
   * that eBay sends anyway is skipped. Without it, items keep their own currencies and are
   * ordered by amount alone. @defaultValue none
   */
  currency?: string
  /** Abandons the search (a shutdown): the call rejects with the signal's reason. */
  signal?: AbortSignal
}

/** The eBay client. */
export interface EbayClient {
  /** The `limit` cheapest items for `phrase`, by price plus shipping. Throws {@link EbayError}. */
  search(phrase: string, options?: EbaySearchOptions): Promise<EbaySearchResult>
  /** Lets the requests in flight end (each within the timeout) and closes the connections. Later calls return the same promise. */
  close(): Promise<void>
}

/** The scope of an application token that may search (eBay's public-data scope). */
const API_SCOPE = 'https://api.ebay.com/oauth/api_scope'
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024
const DEFAULT_RETRY_AFTER_MS = 1000
/** A Retry-After beyond a day is a broken header, not a plan: capped. */
const MAX_RETRY_AFTER_MS = 86_400_000
/** The token is refreshed this long before it expires at most (10% of its lifetime when that is shorter). */
const TOKEN_REFRESH_MARGIN_MS = 60_000
/** eBay's keyword limit (its search box, and the older Finding API) is 350 characters. */
const MAX_PHRASE_CHARS = 350
const MAX_PAGE_SIZE = 200
const CURRENCY = /^[A-Z]{3}$/
const MARKETPLACE = /^EBAY_[A-Z_]{2,10}$/
/** Printable ASCII: what a token may hold to be sent back in a header. */
const TOKEN_CHARS = /^[\x21-\x7e]{1,8192}$/
/** A decimal amount as eBay writes it, tolerating an exponent (normalised away). */
const AMOUNT = /^(\d{1,40})(?:\.(\d{1,40}))?(?:[eE]([+-]?\d{1,3}))?$/
/** Powers of ten an amount may span, after its exponent: far beyond any price, short enough to print. */
const AMOUNT_MAX_INTEGER_DIGITS = 30
const AMOUNT_MAX_DECIMALS = 20
const MAX_TITLE_CHARS = 1000
const MAX_ID_CHARS = 200
const MAX_URL_CHARS = 4096

type Json = Record<string, unknown>

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Reads a decimal amount: its normalised text (as sent when it is already plain decimal,
 * so "1.50" stays "1.50"), or the reason it is not one.
 */
export function parseAmount(value: unknown): { text: string; big: Big } | { reason: string } {
  if (typeof value !== 'string') return { reason: `is ${value === undefined ? 'missing' : `not a decimal string (${quote(value, 40)})`}` }
  const text = value.trim()
  if (text.startsWith('-')) return { reason: `is negative (${quote(value, 40)})` }
  const match = AMOUNT.exec(text)
  if (!match) return { reason: `is not a decimal string (${quote(value, 40)})` }
  const [, integer = '', fraction, exponent] = match
  const plain = exponent === undefined && (integer === '0' || !integer.startsWith('0'))
  const big = new Big(text)
  // big.js keeps digits `c` and the exponent `e` of the first one: the number spans
  // from 10^e down to 10^(e - c.length + 1).
  const decimals = Math.max(0, big.c.length - big.e - 1)
  if (big.e >= AMOUNT_MAX_INTEGER_DIGITS || decimals > AMOUNT_MAX_DECIMALS) {
    return { reason: `is out of range (${quote(value, 40)})` }
  }
  if (plain) return { text, big }
  // Keeps the decimals it was written with ("1.50e1" is 15.0), dropping only the exponent.
  const written = Math.max(decimals, (fraction?.length ?? 0) - Number(exponent ?? 0))
  return { text: big.toFixed(Math.max(0, written)), big }
}

/** Decimal places of a normalised amount. */
function decimalsOf(text: string): number {
  const dot = text.indexOf('.')
  return dot < 0 ? 0 : text.length - dot - 1
}

/** An http(s) URL, normalised, or undefined. */
function httpUrl(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_URL_CHARS) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : undefined
}

/** A usable item, with its total as a number for the sort. */
interface RankedItem {
  item: EbayItem
  totalBig: Big
}

/** Reads one entry of `itemSummaries`: the item, or why it cannot be used. */
function readItem(raw: unknown, currency: string | undefined): RankedItem | EbaySkippedItem {
  if (!isObject(raw)) return { itemId: null, reason: 'the item is not a JSON object' }
  const id = raw.itemId
  const itemId = typeof id === 'string' && id.trim() !== '' && id.length <= MAX_ID_CHARS ? id.trim() : null
  const skip = (reason: string): EbaySkippedItem => ({ itemId, reason })
  if (itemId === null) return skip(id === undefined ? 'itemId is missing' : `itemId is not a usable id (${quote(id, 40)})`)
  if (typeof raw.title !== 'string' || raw.title.trim() === '') return skip('title is missing')
  if (raw.title.length > MAX_TITLE_CHARS) return skip(`title is longer than ${MAX_TITLE_CHARS} characters`)
  // Control characters would break the email's lines and the logs; a space reads the same.
  const title = raw.title.replace(/\p{Cc}+/gu, ' ').trim()
  const itemWebUrl = httpUrl(raw.itemWebUrl)
  if (itemWebUrl === undefined) {
    return skip(raw.itemWebUrl === undefined ? 'itemWebUrl is missing' : `itemWebUrl is not an http(s) URL (${quote(raw.itemWebUrl, 60)})`)
  }
  if (!isObject(raw.price)) return skip(raw.price === undefined ? 'price is missing' : 'price is not an object')
  const price = parseAmount(raw.price.value)
  if ('reason' in price) return skip(`price.value ${price.reason}`)
  const priceCurrency = raw.price.currency
  if (typeof priceCurrency !== 'string' || !CURRENCY.test(priceCurrency)) {
    return skip(`price.currency is not an ISO 4217 code (${quote(priceCurrency, 20)})`)
  }
  if (currency !== undefined && priceCurrency !== currency) {
    return skip(`priced in ${priceCurrency}, not the requested ${currency}`)
  }
  const shipping = cheapestShipping(raw.shippingOptions, priceCurrency)
  if (typeof shipping === 'string') return skip(shipping)
  const image = isObject(raw.image) ? httpUrl(raw.image.imageUrl) : undefined
  const totalBig = shipping ? price.big.plus(shipping.big) : price.big
  const decimals = Math.max(decimalsOf(price.text), shipping ? decimalsOf(shipping.text) : 0)
  return {
    item: {
      itemId,
      title,
      price: price.text,
      currency: priceCurrency,
      shipping: shipping?.text ?? null,
      total: totalBig.toFixed(decimals),
      itemWebUrl,
      imageUrl: image ?? null,
    },
    totalBig,
  }
}

/**
 * The cheapest shipping cost of an item: undefined when no option states a cost (none
 * given, or calculated at checkout), a message when an option's cost cannot be read or is
 * in another currency than the price (the total would be wrong).
 */
function cheapestShipping(options: unknown, currency: string): { text: string; big: Big } | string | undefined {
  if (options === undefined || options === null) return undefined
  if (!Array.isArray(options)) return 'shippingOptions is not a list'
  let cheapest: { text: string; big: Big } | undefined
  for (const option of options) {
    if (!isObject(option)) return 'a shipping option is not a JSON object'
    const cost = option.shippingCost
    if (cost === undefined || cost === null) continue
    if (!isObject(cost)) return 'a shippingCost is not an object'
    const amount = parseAmount(cost.value)
    if ('reason' in amount) return `shippingCost.value ${amount.reason}`
    if (cost.currency !== currency) return `shipping is priced in ${quote(cost.currency, 20)}, the item in ${currency}`
    if (!cheapest || amount.big.lt(cheapest.big)) cheapest = amount
  }
  return cheapest
}

/** Options of {@link selectCheapestItems}. */
export interface SelectOptions {
  /** How many items to keep. */
  limit: number
  /** Only this currency; others are skipped. @defaultValue any */
  currency?: string
}

/**
 * Reads eBay's `itemSummaries` into the `limit` cheapest usable items, by total (price
 * plus cheapest shipping, exact), then by itemId for a stable order. Items that cannot
 * be used, and repeats of an itemId already seen, are listed in `skipped`.
 */
export function selectCheapestItems(summaries: readonly unknown[], options: SelectOptions): { items: EbayItem[]; skipped: EbaySkippedItem[] } {
  const usable: RankedItem[] = []
  const skipped: EbaySkippedItem[] = []
  const seen = new Set<string>()
  for (const raw of summaries) {
    const read = readItem(raw, options.currency)
    if ('reason' in read) {
      skipped.push(read)
      continue
    }
    if (seen.has(read.item.itemId)) {
      skipped.push({ itemId: read.item.itemId, reason: 'the same itemId came earlier in the answer' })
      continue
    }
    seen.add(read.item.itemId)
    usable.push(read)
  }
  usable.sort((a, b) => a.totalBig.cmp(b.totalBig) || (a.item.itemId < b.item.itemId ? -1 : a.item.itemId > b.item.itemId ? 1 : 0))
  return { items: usable.slice(0, options.limit).map((r) => r.item), skipped }
}

/**
 * Reads a search answer (parsed JSON) into a {@link EbaySearchResult}; throws
 * {@link EbayError} `bad_answer` when it is not the shape eBay documents.
 */
export function parseSearchAnswer(body: unknown, options: SelectOptions): EbaySearchResult {
  if (!isObject(body)) throw new EbayError('bad_answer', 'the eBay search answer is not a JSON object', { status: 200 })
  const total = body.total
  if (typeof total !== 'number' || !Number.isSafeInteger(total) || total < 0) {
    throw new EbayError('bad_answer', `the eBay search answer's total is not a whole number (${quote(total, 40)})`, { status: 200 })
  }
  const summaries = body.itemSummaries ?? []
  if (!Array.isArray(summaries)) throw new EbayError('bad_answer', "the eBay search answer's itemSummaries is not a list", { status: 200 })
  return { total, ...selectCheapestItems(summaries, options) }
}

/**
 * Milliseconds a Retry-After header asks for: whole seconds or an HTTP date; 1 s when
 * absent or unreadable, never below 0 nor above a day.
 */
export function retryAfterMs(header: string | string[] | undefined, nowMs: number): number {
  const text = (Array.isArray(header) ? header[0] : header)?.trim()
  if (text === undefined || text === '') return DEFAULT_RETRY_AFTER_MS
  if (/^\d{1,12}$/.test(text)) return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS)
  const date = Date.parse(text)
  if (!Number.isFinite(date)) return DEFAULT_RETRY_AFTER_MS
  return Math.min(Math.max(0, date - nowMs), MAX_RETRY_AFTER_MS)
}

/**
 * What eBay said went wrong: the first of `{ errors: [{ errorId, message }] }`, or the
 * OAuth shape `{ error, error_description }` of the token endpoint; undefined otherwise.
 */
function errorDetail(text: string): { message: string; errorId: number | null } | undefined {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isObject(body)) return undefined
  const first: unknown = Array.isArray(body.errors) ? body.errors[0] : undefined
  if (isObject(first)) {
    const message = typeof first.message === 'string' ? first.message : typeof first.longMessage === 'string' ? first.longMessage : 'no message'
    return { message, errorId: Number.isSafeInteger(first.errorId) ? (first.errorId as number) : null }
  }
  if (typeof body.error === 'string') {
    const description = typeof body.error_description === 'string' ? `: ${body.error_description}` : ''
    return { message: `${body.error}${description}`, errorId: null }
  }
  return undefined
}

/** A response, read whole. */
interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

/** Thrown inside a request when its own deadline passed, to tell it from other aborts. */
class DeadlineReached extends Error {
  override name = 'DeadlineReached'
}

/** Creates the client; close it with {@link EbayClient.close}. */
export function createEbayClient(options: EbayClientOptions): EbayClient {
  const base = httpUrl(options.baseUrl)
  if (base === undefined) throw new RangeError(`baseUrl must be an http(s) URL (got ${quote(options.baseUrl)})`)
  const baseUrl = base.replace(/\/+$/, '')
  if (!MARKETPLACE.test(options.marketplaceId)) throw new RangeError(`marketplaceId must look like EBAY_US (got ${quote(options.marketplaceId)})`)
  if (options.clientId === '' || options.clientSecret === '') throw new RangeError('clientId and clientSecret must not be empty')
  const timeoutMs = options.timeoutMs
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive whole number (got ${timeoutMs})`)
  const marketplaceId = options.marketplaceId
  const now = options.now ?? Date.now
  const log = options.log?.child({ component: 'ebay-client' })
  const basic = Buffer.from(`${options.clientId}:${options.clientSecret}`).toString('base64')
  const agent = new Agent({
    connections: options.connections ?? 32,
    // Below the usual 5 s server keep-alive, so a connection the server is closing is not reused.
    keepAliveTimeout: 4000,
    connect: { timeout: timeoutMs },
    maxResponseSize: MAX_RESPONSE_BYTES,
  })
  let closing: Promise<void> | undefined
  let cached: { value: string; refreshAt: number } | undefined
  let fetching: Promise<string> | undefined

  /** One request, read whole within the timeout; transport failures become EbayErrors. */
  const send = async (
    what: string,
    url: string,
    init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
    signal?: AbortSignal,
  ): Promise<Answer> => {
    if (closing) throw new EbayError('unavailable', 'the eBay client is closed')
    signal?.throwIfAborted()
    // One deadline for the whole exchange: the undici timeouts below each bound one wait,
    // a slow trickle of body bytes could pass them all.
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(new DeadlineReached(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs)
    const onAbort = () => controller.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const response = await request(url, {
        dispatcher: agent,
        method: init.method,
        headers: init.headers,
        ...(init.body !== undefined && { body: init.body }),
        signal: controller.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      const text = await response.body.text()
      return { status: response.statusCode, headers: response.headers, text }
    } catch (err) {
      signal?.throwIfAborted()
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : err
      if (reason instanceof DeadlineReached) throw new EbayError('unavailable', reason.message, { cause: err })
      const code = (err as { code?: unknown }).code
      // The answer itself is unreadable: too large, or not HTTP.
      if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE' || (typeof code === 'string' && code.startsWith('HPE_'))) {
        throw new EbayError('bad_answer', `${what}: unreadable answer (${(err as Error).message})`, { cause: err })
      }
      const detail = typeof code === 'string' ? `${code}: ${(err as Error).message}` : (err as Error).message
      throw new EbayError('unavailable', `${what}: ${closing ? 'the eBay client is closed' : detail}`, { cause: err })
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** The EbayError for an answer that is not a success. */
  const failure = (what: string, answer: Answer, auth: boolean): EbayError => {
    const detail = errorDetail(answer.text)
    const message = `${what}: eBay answered ${answer.status}${detail ? ` ${quote(detail.message)}` : ''}`
    const context = { status: answer.status, errorId: detail?.errorId ?? null }
    const status = answer.status
    if (status === 429) return new EbayError('rate_limited', message, { ...context, retryAfterMs: retryAfterMs(answer.headers['retry-after'], now()) })
    if (status >= 500 || status === 408) return new EbayError('unavailable', message, context)
    if (status === 401 || status === 403 || (auth && status >= 400)) return new EbayError('auth_failed', message, context)
    if (status >= 400) return new EbayError('bad_request', message, context)
    return new EbayError('bad_answer', `${what}: unexpected status ${status}`, context)
  }

  const fetchToken = async (): Promise<string> => {
    const requestedAt = now()
    const what = 'eBay token request'
    const answer = await send(what, `${baseUrl}/identity/v1/oauth2/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: `grant_type=client_credentials&scope=${encodeURIComponent(API_SCOPE)}`,
    })
    if (answer.status !== 200) throw failure(what, answer, true)
    let body: unknown
    try {
      body = JSON.parse(answer.text)
    } catch {
      throw new EbayError('bad_answer', `${what}: the answer is not JSON`, { status: answer.status })
    }
    const token = isObject(body) ? body.access_token : undefined
    const expiresIn = isObject(body) ? body.expires_in : undefined
    if (typeof token !== 'string' || !TOKEN_CHARS.test(token)) {
      throw new EbayError('bad_answer', `${what}: the answer has no usable access_token`, { status: answer.status })
    }
    if (typeof expiresIn !== 'number' || !Number.isSafeInteger(expiresIn) || expiresIn <= 0) {
      throw new EbayError('bad_answer', `${what}: expires_in is not a positive whole number (${quote(expiresIn, 40)})`, { status: answer.status })
    }
    const lifetimeMs = expiresIn * 1000
    // Counted from before the request, and renewed early, so that a search never sends a
    // token that expires on its way.
    const refreshAt = requestedAt + lifetimeMs - Math.min(TOKEN_REFRESH_MARGIN_MS, lifetimeMs / 10)
    cached = { value: token, refreshAt }
    log?.debug({ expiresIn }, 'eBay token obtained')
    return token
  }

  /** The cached token, or a new one; concurrent callers share one token request. */
  const currentToken = (): Promise<string> => {
    if (cached && now() < cached.refreshAt) return Promise.resolve(cached.value)
    fetching ??= fetchToken().finally(() => {
      fetching = undefined
    })
    return fetching
  }

  /** Forgets `token` if it is still the cached one (several searches may report the same one). */
  const forget = (token: string) => {
    if (cached?.value === token) cached = undefined
  }

  return {
    async search(phrase, searchOptions = {}) {
      const limit = searchOptions.limit ?? 20
      const pageSize = searchOptions.pageSize ?? limit
      const currency = searchOptions.currency
      const words = typeof phrase === 'string' ? phrase.trim() : ''
      if (words === '' || words.length > MAX_PHRASE_CHARS || /\p{Cc}/u.test(words)) {
        throw new EbayError('bad_request', `the search phrase must be 1 to ${MAX_PHRASE_CHARS} characters without control characters (got ${quote(phrase, 40)})`)
      }
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        throw new EbayError('bad_request', `limit must be a whole number from 1 to ${MAX_PAGE_SIZE} (got ${quote(limit)})`)
      }
      if (!Number.isInteger(pageSize) || pageSize < limit || pageSize > MAX_PAGE_SIZE) {
        throw new EbayError('bad_request', `pageSize must be a whole number from limit (${limit}) to ${MAX_PAGE_SIZE} (got ${quote(pageSize)})`)
      }
      if (currency !== undefined && !CURRENCY.test(currency)) {
        throw new EbayError('bad_request', `currency must be an ISO 4217 code such as USD (got ${quote(currency, 20)})`)
      }
      const query = [`q=${encodeURIComponent(words)}`, 'sort=price', `limit=${pageSize}`]
      if (currency !== undefined) query.push(`filter=${encodeURIComponent(`priceCurrency:${currency}`)}`)
      const url = `${baseUrl}/buy/browse/v1/item_summary/search?${query.join('&')}`
      const what = 'eBay search'
      const once = (token: string) =>
        send(
          what,
          url,
          {
            method: 'GET',
            headers: { authorization: `Bearer ${token}`, 'x-ebay-c-marketplace-id': marketplaceId, accept: 'application/json' },
          },
          searchOptions.signal,
        )
      let token = await currentToken()
      let answer = await once(token)
      if (answer.status === 401) {
        // Expired or revoked before its time: one new token, one more try.
        log?.info({ errorId: errorDetail(answer.text)?.errorId }, 'eBay refused the token; getting a new one')
        forget(token)
        token = await currentToken()
        answer = await once(token)
      }
      if (answer.status !== 200) throw failure(what, answer, false)
      let body: unknown
      try {
        body = JSON.parse(answer.text)
      } catch {
        throw new EbayError('bad_answer', `${what}: the answer is not JSON (${quote(answer.text, 60)})`, { status: answer.status })
      }
      const result = parseSearchAnswer(body, { limit, ...(currency !== undefined && { currency }) })
      if (result.skipped.length > 0) {
        log?.warn({ phrase: words, skipped: result.skipped.length, first: result.skipped.slice(0, 5) }, 'eBay items left out')
      }
      return result
    },
    close() {
      closing ??= agent.close()
      return closing
    },
  }
}
