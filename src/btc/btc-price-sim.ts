/**
 * A simulation of the three BTC price providers on one port, over real HTTP and with
 * their paths and JSON, so that `BTC_PROVIDER_URLS=coinbase=http://127.0.0.1:8300,...`
 * is the only change:
 *
 * - Coinbase `GET /v2/exchange-rates?currency=BTC` → `{ data: { currency: "BTC", rates: { EUR: "..." } } }`;
 * - CoinGecko `GET /api/v3/simple/price?ids=bitcoin&vs_currencies=...` → `{ bitcoin: { eur: 61234.5, ..., last_updated_at } }`;
 * - Kraken `GET /0/public/Ticker?pair=XBTEUR,XBTGBP,XBTUSD` → `{ error: [], result: { XXBTZEUR: { c: ["61234.50000", "0.001"] } } }`.
 *
 * One price per currency, in cents, walks at random (seeded) one step per `stepMs`. For
 * tests and the demo, unauthenticated (listen on loopback only):
 * - `GET /sim/faults`, `POST /sim/faults` `{ "<provider>": { failures, latencyMs, garbage, outliers } }`
 *   (any subset): the next `failures` answers are 500, every answer waits `latencyMs`, the
 *   next `garbage` answers are a body cut in the middle, the next `outliers` answers are
 *   50% off the price;
 * - `POST /sim/prices` `{ "EUR": "61234.50", ... }` sets the prices (2 decimals at most);
 * - `GET /sim/stats`: requests per provider; `GET /health`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CURRENCIES, type Currency, PROVIDER_NAMES, type ProviderName } from './providers.ts'
import { readBody, sendJson } from '../platform/http/plain.ts'

/** Failures injected into one provider's answers. */
export interface ProviderFaults {
  /** The next N answers are 500. */
  failures: number
  /** Delay before every answer, in ms. */
  latencyMs: number
  /** The next N answers are 200 with a body cut in the middle (not JSON). */
  garbage: number
  /** The next N answers give half the price. */
  outliers: number
}

/** Faults per provider. */
export type BtcSimFaults = Record<ProviderName, ProviderFaults>

/** Options of {@link createBtcPriceSim}. */
export interface BtcPriceSimOptions {
  /** Seed of the random walk. @defaultValue 1 */
  seed?: number
  /** Real ms between two steps of the walk; 0 never moves the price. @defaultValue 1000 */
  stepMs?: number
  /** Starting prices in cents. @defaultValue EUR 6,000,000, GBP 5,100,000, USD 6,500,000 (×100) */
  startCents?: Partial<Record<Currency, number>>
}

/** A running (or not yet started) simulation. */
export interface BtcPriceSim {
  /** Starts listening; resolves to the base URL every provider is at. */
  listen(port?: number, host?: string): Promise<{ url: string }>
  /** The base URL once listening. */
  readonly url: string | undefined
  /** Changes some faults, `{ provider: { fault: n } }`; throws a RangeError naming a bad one. Returns them all. */
  setFaults(patch: unknown): BtcSimFaults
  /** The faults in force. */
  readonly faults: BtcSimFaults
  /** Sets prices (decimal strings, at most 2 decimals); throws a RangeError naming a bad one. */
  setPrices(patch: unknown): void
  /** The current prices, as decimal strings with 2 decimals. */
  prices(): Record<Currency, string>
  /** Requests answered per provider (and `other`). */
  readonly stats: Readonly<Record<ProviderName | 'other', number>>
  /** Stops the walk, closes the server and its connections. */
  close(): Promise<void>
}

const FAULT_LIMITS: Record<keyof ProviderFaults, number> = { failures: 1_000_000, latencyMs: 600_000, garbage: 1_000_000, outliers: 1_000_000 }
const noFaults = (): ProviderFaults => ({ failures: 0, latencyMs: 0, garbage: 0, outliers: 0 })

/** A seeded pseudo-random generator (mulberry32): the same seed, the same walk. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Cents as a decimal string with `decimals` (2 or more) digits after the point. */
function formatCents(cents: number, decimals = 2): string {
  const text = String(cents).padStart(3, '0')
  return `${text.slice(0, -2)}.${text.slice(-2)}${'0'.repeat(decimals - 2)}`
}

/** Validates a faults patch; a message naming the bad entry, or the checked patch. */
export function checkFaults(patch: unknown): Partial<Record<ProviderName, Partial<ProviderFaults>>> | string {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return 'faults must be a JSON object of providers'
  const checked: Partial<Record<ProviderName, Partial<ProviderFaults>>> = {}
  for (const [provider, faults] of Object.entries(patch)) {
    if (!(PROVIDER_NAMES as readonly string[]).includes(provider)) return `unknown provider ${JSON.stringify(provider)}; known: ${PROVIDER_NAMES.join(', ')}`
    if (typeof faults !== 'object' || faults === null || Array.isArray(faults)) return `the faults of ${provider} must be a JSON object`
    const one: Partial<ProviderFaults> = {}
    for (const [key, value] of Object.entries(faults as Record<string, unknown>)) {
      if (!(key in FAULT_LIMITS)) return `unknown fault ${JSON.stringify(key)}; known: ${Object.keys(FAULT_LIMITS).join(', ')}`
      const max = FAULT_LIMITS[key as keyof ProviderFaults]
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) return `${provider}.${key} must be a whole number from 0 to ${max}`
      one[key as keyof ProviderFaults] = value
    }
    checked[provider as ProviderName] = one
  }
  return checked
}

/** Creates the simulation; call {@link BtcPriceSim.listen} to start it. */
export function createBtcPriceSim(options: BtcPriceSimOptions = {}): BtcPriceSim {
  const random = mulberry32(options.seed ?? 1)
  const cents: Record<Currency, number> = { EUR: 6_000_000, GBP: 5_100_000, USD: 6_500_000, ...options.startCents }
  const faults = Object.fromEntries(PROVIDER_NAMES.map((name) => [name, noFaults()])) as BtcSimFaults
  const stats = { coinbase: 0, coingecko: 0, kraken: 0, other: 0 }
  const stepMs = options.stepMs ?? 1000
  let url: string | undefined
  let closing: Promise<void> | undefined

  // One step moves every price by up to ±0.1%, in whole cents (integer arithmetic).
  const step = () => {
    for (const currency of CURRENCIES) {
      const permille = Math.floor(random() * 2001) - 1000
      cents[currency] = Math.max(100, cents[currency] + Math.trunc((cents[currency] * permille) / 1_000_000))
    }
  }
  const walk = stepMs > 0 ? setInterval(step, stepMs) : undefined
  walk?.unref()

  const setFaults = (patch: unknown) => {
    const checked = checkFaults(patch)
    if (typeof checked === 'string') throw new RangeError(checked)
    for (const [provider, one] of Object.entries(checked)) Object.assign(faults[provider as ProviderName], one)
    return structuredClone(faults)
  }
  const setPrices = (patch: unknown) => {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new RangeError('prices must be a JSON object of currencies')
    const next: Partial<Record<Currency, number>> = {}
    for (const [currency, value] of Object.entries(patch)) {
      if (!(CURRENCIES as readonly string[]).includes(currency)) throw new RangeError(`unknown currency ${JSON.stringify(currency)}; known: ${CURRENCIES.join(', ')}`)
      const match = typeof value === 'string' ? /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(value) : null
      if (!match) throw new RangeError(`${currency} must be a decimal string with at most 2 decimals, such as "61234.50"`)
      const whole = Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'))
      if (whole <= 0) throw new RangeError(`${currency} must be more than 0`)
      next[currency as Currency] = whole
    }
    Object.assign(cents, next)
  }
  const prices = () => Object.fromEntries(CURRENCIES.map((c) => [c, formatCents(cents[c])])) as Record<Currency, string>

  /** The body of `provider`'s answer, at `factor` 1 or 0.5 (an outlier), as text. */
  const answer = (provider: ProviderName, outlier: boolean): string => {
    const at = (c: Currency) => (outlier ? Math.floor(cents[c] / 2) : cents[c])
    switch (provider) {
      case 'coinbase': {
        const rates = Object.fromEntries(CURRENCIES.map((c) => [c, formatCents(at(c))]))
        return JSON.stringify({ data: { currency: 'BTC', rates: { ...rates, BTC: '1.0' } } })
      }
      case 'coingecko': {
        // Numbers written as text, as CoinGecko writes them: no float rounding on our side.
        const fields = CURRENCIES.map((c) => `"${c.toLowerCase()}":${formatCents(at(c)).replace(/\.?0+$/, '')}`)
        return `{"bitcoin":{${fields.join(',')},"last_updated_at":${Math.floor(Date.now() / 1000)}}}`
      }
      case 'kraken': {
        const result = Object.fromEntries(
          CURRENCIES.map((c) => [`XXBTZ${c}`, { a: [formatCents(at(c), 5), '1', '1.000'], c: [formatCents(at(c), 5), '0.00100000'] }]),
        )
        return JSON.stringify({ error: [], result })
      }
    }
  }

  const providerOf = (path: string): ProviderName | undefined =>
    path === '/v2/exchange-rates' ? 'coinbase' : path === '/api/v3/simple/price' ? 'coingecko' : path === '/0/public/Ticker' ? 'kraken' : undefined

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const { pathname } = new URL(req.url ?? '/', 'http://sim')
    const provider = providerOf(pathname)
    if (provider !== undefined && req.method === 'GET') {
      stats[provider]++
      const own = faults[provider]
      if (own.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, own.latencyMs))
      if (closing) return
      if (own.failures > 0) {
        own.failures--
        sendJson(res, 500, { error: 'simulated failure' })
        return
      }
      const text = answer(provider, own.outliers > 0)
      if (own.outliers > 0) own.outliers--
      if (own.garbage > 0) {
        own.garbage--
        const cut = text.slice(0, Math.floor(text.length / 2))
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(cut) })
        res.end(cut)
        return
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
      return
    }
    stats.other++
    if (pathname === '/health') return sendJson(res, 200, { status: 'ok' })
    if (pathname === '/sim/stats') return sendJson(res, 200, stats)
    if (pathname === '/sim/faults' || pathname === '/sim/prices') {
      if (req.method === 'GET') return sendJson(res, 200, pathname === '/sim/faults' ? faults : prices())
      if (req.method !== 'POST') return sendJson(res, 405, { error: 'use GET or POST' }, { allow: 'GET, POST' })
      const text = await readBody(req, 64 * 1024)
      if (text === undefined) return sendJson(res, 413, { error: 'body too large' })
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        return sendJson(res, 400, { error: 'the body is not JSON' })
      }
      try {
        if (pathname === '/sim/faults') return sendJson(res, 200, setFaults(body))
        setPrices(body)
        return sendJson(res, 200, prices())
      } catch (err) {
        return sendJson(res, 400, { error: (err as Error).message })
      }
    }
    sendJson(res, 404, { error: 'not found' })
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message })
      else res.destroy()
    })
  })

  return {
    async listen(port = 0, host = '127.0.0.1') {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          resolve()
        })
      })
      const address = server.address() as AddressInfo
      url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      return { url }
    },
    get url() {
      return url
    },
    faults,
    setFaults,
    setPrices,
    prices,
    stats,
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (walk) clearInterval(walk)
        if (!server.listening) return resolve()
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}
