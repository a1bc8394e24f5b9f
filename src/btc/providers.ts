/**
 * The outside BTC price providers behind one small interface: Coinbase, CoinGecko and
 * Kraken, each asked for BTC in EUR, GBP and USD in one call. Prices stay exact decimal
 * strings from the wire to the caller: no answer goes through a binary float.
 */
import Big from 'big.js'

/** The fiat currencies BTC is quoted in. */
export const CURRENCIES = ['EUR', 'GBP', 'USD'] as const

/** A fiat currency BTC is quoted in. */
export type Currency = (typeof CURRENCIES)[number]

/** One provider's answer: the price of 1 BTC per currency, as exact decimal strings ("61234.5"). */
export type ProviderQuote = Record<Currency, string>

/** The names of the known providers. */
export const PROVIDER_NAMES = ['coinbase', 'coingecko', 'kraken'] as const

/** The name of a known provider. */
export type ProviderName = (typeof PROVIDER_NAMES)[number]

/** A source of BTC prices. */
export interface PriceProvider {
  /** The provider's name, as in `BTC_PROVIDER_URLS` and the stored quote's `source`. */
  readonly name: ProviderName
  /** Asks the provider once; rejects with {@link ProviderError} on any failure. */
  fetch(signal: AbortSignal): Promise<ProviderQuote>
}

/** What kind of failure a provider call met. */
export type ProviderErrorCode = 'unavailable' | 'timeout' | 'bad_answer'

/** A failed provider call, naming the provider and (for a bad answer) the field. */
export class ProviderError extends Error {
  override name = 'ProviderError'
  /** The provider asked. */
  readonly provider: ProviderName
  /** What went wrong. */
  readonly code: ProviderErrorCode
  /** The HTTP status answered, null when there was no answer. */
  readonly status: number | null
  constructor(provider: ProviderName, code: ProviderErrorCode, message: string, options: { status?: number | null; cause?: unknown } = {}) {
    super(`${provider}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause })
    this.provider = provider
    this.code = code
    this.status = options.status ?? null
  }
}

/** The default `BTC_PROVIDER_URLS`: the real providers, in failover order. */
export const DEFAULT_PROVIDER_URLS = 'coinbase=https://api.coinbase.com,coingecko=https://api.coingecko.com,kraken=https://api.kraken.com'

/** One configured provider: its name and base URL. */
export interface ProviderUrl {
  /** The provider. */
  name: ProviderName
  /** Its base URL, without a trailing slash. */
  url: string
}

/**
 * Parses `BTC_PROVIDER_URLS` (`name=url,name=url`, in failover order). Throws an Error
 * naming an unknown provider, a repeated one or a URL that is not http(s).
 */
export function parseProviderUrls(text: string): ProviderUrl[] {
  const entries = text.split(',').map((part) => part.trim()).filter((part) => part !== '')
  if (entries.length === 0) throw new Error('BTC_PROVIDER_URLS names no provider')
  const seen = new Set<string>()
  return entries.map((entry) => {
    const eq = entry.indexOf('=')
    if (eq < 0) throw new Error(`BTC_PROVIDER_URLS: ${JSON.stringify(entry)} is not name=url`)
    const name = entry.slice(0, eq).trim()
    const url = entry.slice(eq + 1).trim()
    if (!(PROVIDER_NAMES as readonly string[]).includes(name)) {
      throw new Error(`BTC_PROVIDER_URLS: unknown provider ${JSON.stringify(name)}; known: ${PROVIDER_NAMES.join(', ')}`)
    }
    if (seen.has(name)) throw new Error(`BTC_PROVIDER_URLS: provider ${name} is listed twice`)
    seen.add(name)
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new Error(`BTC_PROVIDER_URLS: the URL of ${name} (${JSON.stringify(url)}) is not a URL`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new Error(`BTC_PROVIDER_URLS: the URL of ${name} (${JSON.stringify(url)}) is not http or https`)
    }
    return { name: name as ProviderName, url: url.replace(/\/+$/, '') }
  })
}

/**
 * A price as an exact plain decimal string, or undefined when `value` is not a positive
 * finite decimal (a string such as "61234.50", or "6.1e4" from a JSON number's source).
 */
export function exactPrice(value: unknown): string | undefined {
  if (typeof value !== 'string' || !/^\d+(\.\d+)?([eE][+-]?\d+)?$/.test(value) || value.length > 64) return undefined
  const big = new Big(value)
  if (big.lte(0)) return undefined
  return big.toFixed()
}

/** A JSON number kept as the text it was written as. */
class RawNumber {
  /** The number's text in the JSON. */
  readonly source: string
  constructor(source: string) {
    this.source = source
  }
}

/** Parses JSON keeping every number as its source text ({@link RawNumber}): no float in between. */
function parseJsonExact(text: string): unknown {
  // The reviver's third argument (the source text of a primitive) is in Node 22+; older
  // type definitions do not describe it.
  const reviver = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined ? new RawNumber(context.source) : value
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown)
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Options shared by the providers. */
export interface ProviderOptions {
  /** Base URL (`https://api.coinbase.com`, or the simulation's). */
  baseUrl: string
  /** The fetch to use. @defaultValue globalThis.fetch */
  fetch?: typeof fetch
}

/** Asks `url` and answers its body text; a ProviderError unless the status is 200. */
async function getText(name: ProviderName, url: string, signal: AbortSignal, options: ProviderOptions, headers: Record<string, string> = {}): Promise<string> {
  const doFetch = options.fetch ?? fetch
  let res: Response
  try {
    res = await doFetch(url, { signal, headers: { accept: 'application/json', ...headers } })
  } catch (err) {
    if (signal.aborted) throw new ProviderError(name, 'timeout', 'no answer in time', { cause: err })
    throw new ProviderError(name, 'unavailable', `request failed: ${(err as Error).message}`, { cause: err })
  }
  let text: string
  try {
    text = await res.text()
  } catch (err) {
    if (signal.aborted) throw new ProviderError(name, 'timeout', 'no complete answer in time', { cause: err, status: res.status })
    throw new ProviderError(name, 'unavailable', `answer cut: ${(err as Error).message}`, { cause: err, status: res.status })
  }
  if (res.status !== 200) throw new ProviderError(name, 'unavailable', `answered HTTP ${res.status}`, { status: res.status })
  return text
}

/** A bad-answer error naming the provider and the field. */
const badField = (name: ProviderName, field: string, problem: string) => new ProviderError(name, 'bad_answer', `${field} ${problem}`, { status: 200 })

/** Parses JSON text, or a bad-answer error. */
function parseBody(name: ProviderName, text: string, exact: boolean): unknown {
  try {
    return exact ? parseJsonExact(text) : JSON.parse(text)
  } catch {
    throw badField(name, 'the body', 'is not JSON')
  }
}

/** Parses a Coinbase `/v2/exchange-rates?currency=BTC` body. */
export function parseCoinbase(text: string): ProviderQuote {
  const body = parseBody('coinbase', text, false)
  const data = isObject(body) ? body.data : undefined
  if (!isObject(data)) throw badField('coinbase', 'data', 'is missing or not an object')
  if (data.currency !== 'BTC') throw badField('coinbase', 'data.currency', `is ${JSON.stringify(data.currency)}, not "BTC"`)
  const rates = data.rates
  if (!isObject(rates)) throw badField('coinbase', 'data.rates', 'is missing or not an object')
  const quote = {} as ProviderQuote
  for (const currency of CURRENCIES) {
    const price = exactPrice(rates[currency])
    if (price === undefined) throw badField('coinbase', `data.rates.${currency}`, `is not a positive decimal string (got ${JSON.stringify(rates[currency])})`)
    quote[currency] = price
  }
  return quote
}

/** Parses a CoinGecko `/api/v3/simple/price` body, reading its numbers from the text. */
export function parseCoinGecko(text: string): ProviderQuote {
  const body = parseBody('coingecko', text, true)
  const bitcoin = isObject(body) ? body.bitcoin : undefined
  if (!isObject(bitcoin)) throw badField('coingecko', 'bitcoin', 'is missing or not an object')
  const quote = {} as ProviderQuote
  for (const currency of CURRENCIES) {
    const key = currency.toLowerCase()
    const value = bitcoin[key]
    const price = value instanceof RawNumber ? exactPrice(value.source) : undefined
    if (price === undefined) {
      const shown = value instanceof RawNumber ? value.source : JSON.stringify(value)
      throw badField('coingecko', `bitcoin.${key}`, `is not a positive number (got ${shown})`)
    }
    quote[currency] = price
  }
  return quote
}

/** Kraken's names of the BTC pairs in its answers. */
const KRAKEN_PAIRS: Record<Currency, string> = { EUR: 'XXBTZEUR', GBP: 'XXBTZGBP', USD: 'XXBTZUSD' }

/** Parses a Kraken `/0/public/Ticker` body: `result.<pair>.c[0]`, the last trade price. */
export function parseKraken(text: string): ProviderQuote {
  const body = parseBody('kraken', text, false)
  if (!isObject(body)) throw badField('kraken', 'the body', 'is not an object')
  if (!Array.isArray(body.error)) throw badField('kraken', 'error', 'is missing or not an array')
  if (body.error.length > 0) throw new ProviderError('kraken', 'unavailable', `answered errors: ${body.error.map(String).join('; ')}`, { status: 200 })
  const result = body.result
  if (!isObject(result)) throw badField('kraken', 'result', 'is missing or not an object')
  const quote = {} as ProviderQuote
  for (const currency of CURRENCIES) {
    const pair = KRAKEN_PAIRS[currency]
    const ticker = result[pair]
    if (!isObject(ticker)) throw badField('kraken', `result.${pair}`, 'is missing or not an object')
    const last = Array.isArray(ticker.c) ? ticker.c[0] : undefined
    const price = exactPrice(last)
    if (price === undefined) throw badField('kraken', `result.${pair}.c[0]`, `is not a positive decimal string (got ${JSON.stringify(last)})`)
    quote[currency] = price
  }
  return quote
}

/** Coinbase: `GET /v2/exchange-rates?currency=BTC`, no key, rates as strings. */
export function coinbaseProvider(options: ProviderOptions): PriceProvider {
  return {
    name: 'coinbase',
    fetch: async (signal) => parseCoinbase(await getText('coinbase', `${options.baseUrl}/v2/exchange-rates?currency=BTC`, signal, options)),
  }
}

/** CoinGecko: `GET /api/v3/simple/price`, with the demo key header when given. */
export function coinGeckoProvider(options: ProviderOptions & { apiKey?: string | undefined }): PriceProvider {
  const path = '/api/v3/simple/price?ids=bitcoin&vs_currencies=eur,gbp,usd&include_last_updated_at=true&precision=full'
  const headers: Record<string, string> = options.apiKey === undefined ? {} : { 'x-cg-demo-api-key': options.apiKey }
  return {
    name: 'coingecko',
    fetch: async (signal) => parseCoinGecko(await getText('coingecko', `${options.baseUrl}${path}`, signal, options, headers)),
  }
}

/** Kraken: `GET /0/public/Ticker?pair=XBTEUR,XBTGBP,XBTUSD`, no key. */
export function krakenProvider(options: ProviderOptions): PriceProvider {
  return {
    name: 'kraken',
    fetch: async (signal) => parseKraken(await getText('kraken', `${options.baseUrl}/0/public/Ticker?pair=XBTEUR,XBTGBP,XBTUSD`, signal, options)),
  }
}

/** The providers of a parsed `BTC_PROVIDER_URLS`, in its order. */
export function createProviders(urls: readonly ProviderUrl[], options: { coinGeckoApiKey?: string | undefined; fetch?: typeof fetch } = {}): PriceProvider[] {
  return urls.map(({ name, url }) => {
    const base = { baseUrl: url, ...(options.fetch && { fetch: options.fetch }) }
    switch (name) {
      case 'coinbase':
        return coinbaseProvider(base)
      case 'coingecko':
        return coinGeckoProvider({ ...base, apiKey: options.coinGeckoApiKey })
      case 'kraken':
        return krakenProvider(base)
    }
  })
}
