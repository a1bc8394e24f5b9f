/**
 * A simulation of the two eBay endpoints product alerts call, over real HTTP and with
 * eBay's shapes, so that pointing `EBAY_BASE_URL` at eBay is the only change:
 *
 * - `POST /identity/v1/oauth2/token` (client credentials grant, Basic auth) answers
 *   `{ access_token, expires_in: 7200, token_type: "Application Access Token" }`, and the
 *   OAuth error shape `{ error, error_description }` (401 bad credentials, 400 bad grant).
 * - `GET /buy/browse/v1/item_summary/search?q=...&sort=price&limit=20&offset=0&filter=priceCurrency:USD`
 *   with `Authorization: Bearer` and `X-EBAY-C-MARKETPLACE-ID` answers `{ href, total,
 *   next, limit, offset, itemSummaries }` from the deterministic catalogue
 *   (`ebay-sim.catalogue.ts`), prices moving with simulated time; 401 with errorId 1001
 *   for a missing, unknown or expired token; eBay's `{ errors: [...] }` shape for every
 *   error. No results: `total: 0` and no `itemSummaries`. Of `filter`, only
 *   `priceCurrency` is applied; `sort` knows `price` and `-price`, any other is the
 *   catalogue's own (best match) order. The errorIds other than 1001 are the
 *   simulation's own, not eBay's.
 *
 * For tests and the demo, unauthenticated (listen on loopback only):
 * - `GET /sim/faults`, `POST /sim/faults` (JSON, any subset of {@link EbaySimFaults}):
 *   failures to inject; `GET /sim/stats`: requests counted per endpoint;
 * - `POST /sim/items` `{ "phrase": "...", "items": [...] }`: the search of that phrase
 *   answers exactly these items (any JSON, malformed ones included), in this order,
 *   without sorting or filtering; `"items": null` goes back to the catalogue;
 * - `GET /health`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  createEbayCatalogue,
  type EbayCatalogue,
  formatCents,
  MARKETPLACE_CURRENCIES,
  normalisePhrase,
  type SimItem,
} from './ebay-sim.catalogue.ts'
import { readBody, sendJson } from '../platform/http/plain.ts'

/** Failures the simulation injects; counts go down by one per request they hit. */
export interface EbaySimFaults {
  /** The next N searches answer 500 (eBay's error shape). */
  serverErrors: number
  /** The next N searches answer 429 with `Retry-After: retryAfterSeconds`. */
  rateLimited: number
  /** The Retry-After of those 429s, in seconds. */
  retryAfterSeconds: number
  /** The next N searches answer 200 with a body cut in the middle (not JSON). */
  malformedAnswers: number
  /** Every search answer starts with N items without a price, taking the place of the page's last N. */
  itemsWithoutPrice: number
  /** The next N token requests answer 500. */
  tokenFailures: number
  /** The next N searches find their token expired: 401 (errorId 1001), and the token is revoked. */
  expiredTokens: number
  /** Real lifetime of new tokens in ms, shorter than the `expires_in` they announce; null: as announced. */
  tokenLifetimeMs: number | null
  /** Delay before every search answer, in ms. */
  latencyMs: number
}

/** Options of {@link createEbaySim}. */
export interface EbaySimOptions {
  /** Seed of the catalogue: items and price moves. @defaultValue 1 */
  seed?: number
  /** The client id the token endpoint accepts. @defaultValue bourse-sim */
  clientId?: string
  /** The client secret the token endpoint accepts. @defaultValue bourse-sim-secret */
  clientSecret?: string
  /** `expires_in` of new tokens, in seconds. @defaultValue 7200 */
  tokenExpiresInSeconds?: number
  /** The real clock (epoch ms): token expiry, and simulated time as now() × timeScale. @defaultValue Date.now */
  now?: () => number
  /** Simulated milliseconds per real millisecond (60: prices move every real minute). @defaultValue 1 */
  timeScale?: number
  /** Simulated length of one price step, in ms. @defaultValue 3600000 */
  stepMs?: number
  /** Failures injected from the start. @defaultValue none */
  faults?: Partial<EbaySimFaults>
}

/** Requests counted per endpoint and answer. */
export interface EbaySimStats {
  /** Token requests received. */
  tokenRequests: number
  /** Tokens issued. */
  tokensIssued: number
  /** Token requests answered 500 (injected). */
  tokenErrors: number
  /** Token requests refused (400 or 401). */
  tokenRefused: number
  /** Search requests received. */
  searchRequests: number
  /** Searches answered 200 with items (not the malformed ones). */
  searchesAnswered: number
  /** Searches answered 401 (missing, unknown or expired token). */
  unauthorized: number
  /** Searches answered 400 or 405. */
  badRequests: number
  /** Searches answered 500 (injected). */
  serverErrors: number
  /** Searches answered 429 (injected). */
  rateLimited: number
  /** Searches answered with a cut body (injected). */
  malformedAnswers: number
  /** Requests to other paths. */
  otherRequests: number
  /** Searches waiting for their latency now. */
  inFlight: number
}

/** A running (or not yet started) simulation. */
export interface EbaySim {
  /** Starts listening; resolves to the base URL (what `EBAY_BASE_URL` takes). */
  listen(port?: number, host?: string): Promise<{ url: string }>
  /** The base URL once listening. */
  readonly url: string | undefined
  /** The faults in force; change them with {@link EbaySim.setFaults} (validated) or directly. */
  readonly faults: EbaySimFaults
  /** Changes some faults; throws a RangeError naming a bad one. Returns them all. */
  setFaults(patch: Record<string, unknown>): EbaySimFaults
  readonly stats: Readonly<EbaySimStats>
  /** The catalogue the searches answer from, for expected results. */
  readonly catalogue: EbayCatalogue
  /** Makes the search of `phrase` answer exactly `items`, as given; null goes back to the catalogue. */
  setItems(phrase: string, items: readonly unknown[] | null): void
  /** Stops accepting, answers 503 to searches still waiting, closes the connections. Later calls return the same promise. */
  close(): Promise<void>
}

const DEFAULT_FAULTS: EbaySimFaults = {
  serverErrors: 0,
  rateLimited: 0,
  retryAfterSeconds: 1,
  malformedAnswers: 0,
  itemsWithoutPrice: 0,
  tokenFailures: 0,
  expiredTokens: 0,
  tokenLifetimeMs: null,
  latencyMs: 0,
}
/** Bounds of each fault; tokenLifetimeMs also takes null. */
const FAULT_LIMITS: Record<keyof EbaySimFaults, number> = {
  serverErrors: 1_000_000,
  rateLimited: 1_000_000,
  retryAfterSeconds: 86_400,
  malformedAnswers: 1_000_000,
  itemsWithoutPrice: 200,
  tokenFailures: 1_000_000,
  expiredTokens: 1_000_000,
  tokenLifetimeMs: 1_000_000_000,
  latencyMs: 600_000,
}

const API_SCOPE = 'https://api.ebay.com/oauth/api_scope'
const SEARCH_PATH = '/buy/browse/v1/item_summary/search'
const TOKEN_PATH = '/identity/v1/oauth2/token'
const MAX_BODY_BYTES = 64 * 1024
const MAX_ITEMS_BODY_BYTES = 8 * 1024 * 1024
const MAX_TOKENS = 100_000
const SORTS = new Set(['price', '-price', 'distance', 'newlyListed', 'endingSoonest'])

/** Validates a partial set of faults; a message naming the bad one, or the checked patch. */
export function checkFaults(patch: unknown): Partial<EbaySimFaults> | string {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return 'faults must be a JSON object'
  const checked: Record<string, number | null> = {}
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in FAULT_LIMITS)) return `unknown fault ${JSON.stringify(key)}; known: ${Object.keys(FAULT_LIMITS).join(', ')}`
    const max = FAULT_LIMITS[key as keyof EbaySimFaults]
    if (key === 'tokenLifetimeMs' && value === null) {
      checked[key] = null
      continue
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
      return `${key} must be a whole number from 0 to ${max}${key === 'tokenLifetimeMs' ? ', or null' : ''}`
    }
    checked[key] = value
  }
  return checked as Partial<EbaySimFaults>
}

/** An eBay error body. */
function ebayErrors(errorId: number, category: 'REQUEST' | 'APPLICATION' | 'BUSINESS', message: string, domain = 'API_BROWSE') {
  return { errors: [{ errorId, domain, category, message, longMessage: message }] }
}



/** Compares two secrets in constant time. */
function sameText(a: string, b: string): boolean {
  const [x, y] = [Buffer.from(a), Buffer.from(b)]
  return x.length === y.length && timingSafeEqual(x, y)
}

/** The `priceCurrency` of an eBay `filter`, undefined when absent; a message when malformed. */
function filterCurrency(filter: string | null): string | undefined | { error: string } {
  if (filter === null) return undefined
  // Commas inside [..] or {..} belong to one field's value.
  const fields = filter.split(/,(?![^[{]*[\]}])/)
  for (const field of fields) {
    const colon = field.indexOf(':')
    if (colon < 0) return { error: `The filter field ${JSON.stringify(field)} has no value.` }
    if (field.slice(0, colon).trim() !== 'priceCurrency') continue
    const currency = field.slice(colon + 1).trim()
    if (!/^[A-Z]{3}$/.test(currency)) return { error: `The priceCurrency ${JSON.stringify(currency)} is not a currency code.` }
    return currency
  }
  return undefined
}

/** An item of the catalogue as the Browse API shows it. */
function itemSummary(item: SimItem, base: string): Record<string, unknown> {
  const shippingOptions =
    item.shipping.type === 'none'
      ? undefined
      : item.shipping.type === 'calculated'
        ? [{ shippingCostType: 'CALCULATED' }]
        : item.shipping.costsCents.map((cents) => ({
            shippingCostType: 'FIXED',
            shippingCost: { value: formatCents(cents), currency: item.currency },
          }))
  return {
    itemId: item.itemId,
    title: item.title,
    price: { value: formatCents(item.priceCents), currency: item.currency },
    ...(item.imageUrl !== null && { image: { imageUrl: item.imageUrl } }),
    itemHref: `${base}/buy/browse/v1/item/${encodeURIComponent(item.itemId)}`,
    seller: item.seller,
    condition: item.condition,
    conditionId: item.conditionId,
    buyingOptions: ['FIXED_PRICE'],
    ...(shippingOptions && { shippingOptions }),
    itemWebUrl: `https://www.ebay.com/itm/${item.legacyId}`,
    itemLocation: { country: 'US', postalCode: '9****' },
  }
}

/** Creates the simulation; call {@link EbaySim.listen} to start it. */
export function createEbaySim(options: EbaySimOptions = {}): EbaySim {
  const clientId = options.clientId ?? 'bourse-sim'
  const clientSecret = options.clientSecret ?? 'bourse-sim-secret'
  const expiresIn = options.tokenExpiresInSeconds ?? 7200
  if (!Number.isInteger(expiresIn) || expiresIn < 1) throw new RangeError('tokenExpiresInSeconds must be a whole number of at least 1')
  const now = options.now ?? Date.now
  const catalogue = createEbayCatalogue({
    ...(options.seed !== undefined && { seed: options.seed }),
    ...(options.timeScale !== undefined && { timeScale: options.timeScale }),
    ...(options.stepMs !== undefined && { stepMs: options.stepMs }),
  })
  const faults: EbaySimFaults = { ...DEFAULT_FAULTS }
  const setFaults = (patch: Record<string, unknown>) => {
    const checked = checkFaults(patch)
    if (typeof checked === 'string') throw new RangeError(checked)
    Object.assign(faults, checked)
    return { ...faults }
  }
  setFaults(options.faults ?? {})
  const stats: EbaySimStats = {
    tokenRequests: 0,
    tokensIssued: 0,
    tokenErrors: 0,
    tokenRefused: 0,
    searchRequests: 0,
    searchesAnswered: 0,
    unauthorized: 0,
    badRequests: 0,
    serverErrors: 0,
    rateLimited: 0,
    malformedAnswers: 0,
    otherRequests: 0,
    inFlight: 0,
  }
  /** Valid tokens and when they expire (real epoch ms); oldest first. */
  const tokens = new Map<string, number>()
  /** Fixed answers per normalised phrase (POST /sim/items). */
  const fixedItems = new Map<string, readonly unknown[]>()
  /** Searches waiting out their latency: calling one ends its wait at once (close). */
  const waiting = new Set<() => void>()
  let url: string | undefined
  let closing: Promise<void> | undefined

  const issueToken = (): string => {
    const token = `v^1.1#i^1#p^1#r^0#I^3#f^0#t^${randomBytes(48).toString('base64')}`
    const lifetimeMs = faults.tokenLifetimeMs ?? expiresIn * 1000
    if (tokens.size >= MAX_TOKENS) {
      const at = now()
      for (const [value, expiresAt] of tokens) if (expiresAt <= at) tokens.delete(value)
      // Still full: the oldest go, as if they had expired.
      for (const value of tokens.keys()) {
        if (tokens.size < MAX_TOKENS) break
        tokens.delete(value)
      }
    }
    tokens.set(token, now() + lifetimeMs)
    stats.tokensIssued++
    return token
  }

  const token = async (req: IncomingMessage, res: ServerResponse) => {
    stats.tokenRequests++
    if (req.method !== 'POST') {
      stats.tokenRefused++
      sendJson(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { allow: 'POST' })
      return
    }
    const text = await readBody(req, MAX_BODY_BYTES)
    if (faults.tokenFailures > 0) {
      faults.tokenFailures--
      stats.tokenErrors++
      sendJson(res, 500, ebayErrors(10001, 'APPLICATION', 'There was a problem with an eBay internal system or process.', 'OAuth'))
      return
    }
    const refuse = (status: number, error: string, description: string) => {
      stats.tokenRefused++
      sendJson(res, status, { error, error_description: description })
    }
    const auth = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '')
    const credentials = auth ? Buffer.from(auth[1]!, 'base64').toString('utf8') : ''
    const colon = credentials.indexOf(':')
    if (colon < 0 || !sameText(credentials.slice(0, colon), clientId) || !sameText(credentials.slice(colon + 1), clientSecret)) {
      refuse(401, 'invalid_client', 'client authentication failed')
      return
    }
    if (text === undefined || !(req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      refuse(400, 'invalid_request', 'request is missing a required parameter or malformed.')
      return
    }
    const form = new URLSearchParams(text)
    if (form.get('grant_type') !== 'client_credentials') {
      refuse(400, 'unsupported_grant_type', 'grant type in request is not supported by the authorization server')
      return
    }
    const scopes = (form.get('scope') ?? '').split(' ')
    if (!scopes.includes(API_SCOPE)) {
      refuse(400, 'invalid_scope', 'the requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client')
      return
    }
    sendJson(res, 200, { access_token: issueToken(), expires_in: expiresIn, token_type: 'Application Access Token' })
  }

  /** Waits `ms`; true when cut short by close(). */
  const delay = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const cut = () => {
        clearTimeout(timer)
        waiting.delete(cut)
        resolve(true)
      }
      const timer = setTimeout(() => {
        waiting.delete(cut)
        resolve(false)
      }, ms)
      waiting.add(cut)
    })

  const search = async (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => {
    stats.searchRequests++
    const bad = (errorId: number, message: string, status = 400) => {
      stats.badRequests++
      sendJson(res, status, ebayErrors(errorId, 'REQUEST', message))
    }
    if (req.method !== 'GET') {
      bad(12000, 'Use GET.', 405)
      return
    }
    if (faults.latencyMs > 0) {
      stats.inFlight++
      try {
        if (await delay(faults.latencyMs)) {
          sendJson(res, 503, ebayErrors(12000, 'APPLICATION', 'The service is shutting down.'), { connection: 'close' })
          return
        }
      } finally {
        stats.inFlight--
      }
    }
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1]
    const expiresAt = bearer === undefined ? undefined : tokens.get(bearer)
    const expired = faults.expiredTokens > 0 && expiresAt !== undefined
    if (expired) faults.expiredTokens--
    if (expiresAt === undefined || expired || now() >= expiresAt) {
      if (bearer !== undefined) tokens.delete(bearer)
      stats.unauthorized++
      sendJson(res, 401, ebayErrors(1001, 'REQUEST', 'Invalid access token', 'OAuth'))
      return
    }
    if (faults.rateLimited > 0) {
      faults.rateLimited--
      stats.rateLimited++
      sendJson(res, 429, ebayErrors(2001, 'REQUEST', 'The request limit has been reached for the resource.', 'API_BROWSE'), {
        'retry-after': String(faults.retryAfterSeconds),
      })
      return
    }
    if (faults.serverErrors > 0) {
      faults.serverErrors--
      stats.serverErrors++
      sendJson(res, 500, ebayErrors(12000, 'APPLICATION', 'There was a problem with an eBay internal system or process.'))
      return
    }
    const marketplaceId = (req.headers['x-ebay-c-marketplace-id'] as string | undefined) ?? 'EBAY_US'
    if (MARKETPLACE_CURRENCIES[marketplaceId] === undefined) {
      bad(12002, `The marketplace ${JSON.stringify(marketplaceId)} is not supported.`)
      return
    }
    const q = query.get('q')
    if (q === null || q.trim() === '' || q.length > 1000) {
      bad(12001, "The 'q' parameter is required and must be 1 to 1000 characters.")
      return
    }
    const limitText = query.get('limit') ?? '50'
    const offsetText = query.get('offset') ?? '0'
    const limit = Number(limitText)
    const offset = Number(offsetText)
    if (!/^\d{1,3}$/.test(limitText) || limit < 1 || limit > 200) {
      bad(12003, "The 'limit' value must be a whole number from 1 to 200.")
      return
    }
    if (!/^\d{1,5}$/.test(offsetText) || offset > 10_000) {
      bad(12004, "The 'offset' value must be a whole number from 0 to 10000.")
      return
    }
    const sort = query.get('sort') ?? undefined
    if (sort !== undefined && !SORTS.has(sort)) {
      bad(12005, `The 'sort' value ${JSON.stringify(sort)} is not supported.`)
      return
    }
    const currency = filterCurrency(query.get('filter'))
    if (typeof currency === 'object') {
      bad(12006, currency.error)
      return
    }
    const base = `http://${req.headers.host ?? '127.0.0.1'}`
    const fixed = fixedItems.get(normalisePhrase(q))
    let total: number
    let summaries: unknown[]
    if (fixed) {
      total = fixed.length
      summaries = fixed.slice(offset, offset + limit)
    } else {
      const page = catalogue.search(q, {
        step: catalogue.stepAt(now()),
        marketplaceId,
        ...(sort !== undefined && { sort }),
        ...(currency !== undefined && { currency }),
        offset,
        limit,
      })
      total = page.total
      summaries = page.items.map((item) => itemSummary(item, base))
    }
    if (faults.itemsWithoutPrice > 0 && total > 0) {
      const priceless = Array.from({ length: Math.min(faults.itemsWithoutPrice, limit) }, (_, i) => ({
        itemId: `v1|9${String(offset + i).padStart(11, '0')}|0`,
        title: `Listing ${offset + i} without a price`,
        itemWebUrl: `https://www.ebay.com/itm/9${String(offset + i).padStart(11, '0')}`,
      }))
      summaries = [...priceless, ...summaries].slice(0, limit)
    }
    const href = `${base}${SEARCH_PATH}?${query.toString()}`
    const pageQuery = (at: number) => {
      const next = new URLSearchParams(query)
      next.set('offset', String(at))
      next.set('limit', String(limit))
      return `${base}${SEARCH_PATH}?${next.toString()}`
    }
    const body = {
      href,
      total,
      ...(offset + limit < total && { next: pageQuery(offset + limit) }),
      ...(offset > 0 && { prev: pageQuery(Math.max(0, offset - limit)) }),
      limit,
      offset,
      ...(summaries.length > 0 && { itemSummaries: summaries }),
    }
    if (faults.malformedAnswers > 0) {
      faults.malformedAnswers--
      stats.malformedAnswers++
      const text = JSON.stringify(body)
      const cut = text.slice(0, Math.max(1, Math.floor(text.length / 2)))
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(cut) })
      res.end(cut)
      return
    }
    stats.searchesAnswered++
    sendJson(res, 200, body)
  }

  /** The control endpoints under /sim. */
  const control = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    if (path === '/sim/faults' && req.method === 'GET') {
      sendJson(res, 200, faults)
      return
    }
    if (path === '/sim/stats' && req.method === 'GET') {
      sendJson(res, 200, stats)
      return
    }
    if ((path === '/sim/faults' || path === '/sim/items') && req.method === 'POST') {
      const text = await readBody(req, path === '/sim/items' ? MAX_ITEMS_BODY_BYTES : MAX_BODY_BYTES)
      if (text === undefined) {
        sendJson(res, 413, { error: { code: 'body_too_large', message: 'the body is too large' } }, { connection: 'close' })
        return
      }
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        sendJson(res, 400, { error: { code: 'bad_request', message: 'the body is not JSON' } })
        return
      }
      if (path === '/sim/faults') {
        const checked = checkFaults(body)
        if (typeof checked === 'string') {
          sendJson(res, 400, { error: { code: 'bad_request', message: checked } })
          return
        }
        Object.assign(faults, checked)
        sendJson(res, 200, faults)
        return
      }
      const { phrase, items } = (body ?? {}) as { phrase?: unknown; items?: unknown }
      if (typeof phrase !== 'string' || phrase.trim() === '' || (items !== null && !Array.isArray(items))) {
        sendJson(res, 400, { error: { code: 'bad_request', message: 'expected { "phrase": "...", "items": [...] | null }' } })
        return
      }
      setItems(phrase, items as unknown[] | null)
      sendJson(res, 200, { phrase: normalisePhrase(phrase), items: items === null ? null : (items as unknown[]).length })
      return
    }
    sendJson(res, 404, { error: { code: 'not_found', message: 'try GET or POST /sim/faults, GET /sim/stats, POST /sim/items' } })
  }

  const setItems = (phrase: string, items: readonly unknown[] | null) => {
    const key = normalisePhrase(phrase)
    if (items === null) fixedItems.delete(key)
    else fixedItems.set(key, [...items])
  }

  const server = createServer({ keepAlive: true, headersTimeout: 60_000, requestTimeout: 120_000, keepAliveTimeout: 65_000, noDelay: true }, (req, res) => {
    const target = new URL(req.url ?? '/', 'http://sim')
    const path = target.pathname
    const handle = async () => {
      if (path === TOKEN_PATH) return token(req, res)
      if (path === SEARCH_PATH) return search(req, res, target.searchParams)
      if (path.startsWith('/sim/')) return control(req, res, path)
      if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, 200, { status: closing ? 'closing' : 'ok', inFlight: stats.inFlight })
        return
      }
      stats.otherRequests++
      sendJson(res, 404, ebayErrors(12007, 'REQUEST', `No resource at ${JSON.stringify(path.slice(0, 200))}.`))
    }
    handle().catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, ebayErrors(12000, 'APPLICATION', (err as Error).message))
      else res.destroy()
    })
  })

  return {
    faults,
    setFaults,
    stats,
    catalogue,
    setItems,
    get url() {
      return url
    },
    async listen(port = 8200, host = '127.0.0.1') {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host, port, backlog: 4096 }, () => {
          server.off('error', reject)
          resolve()
        })
      })
      const address = server.address() as AddressInfo
      const shownHost = address.address.includes(':') ? `[${address.address}]` : address.address
      url = `http://${shownHost}:${address.port}`
      return { url }
    },
    close() {
      closing ??= (async () => {
        const closed = server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
        // Searches waiting out their latency are answered 503 at once.
        for (const cut of [...waiting]) cut()
        server.closeIdleConnections()
        // Nothing is owed once those answers are out; a request still arriving gets a moment.
        const cutAll = setTimeout(() => server.closeAllConnections(), 1000)
        await new Promise((resolve) => setImmediate(resolve))
        server.closeIdleConnections()
        await closed
        clearTimeout(cutAll)
      })()
      return closing
    },
  }
}
