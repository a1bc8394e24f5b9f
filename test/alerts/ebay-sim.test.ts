/** The eBay simulation: eBay's shapes over real HTTP, a catalogue repeatable for a seed, prices moving with simulated time, faults. */
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { request } from 'undici'
import { createEbayClient, type EbayClient } from '../../src/alerts/ebay.client.ts'
import { createEbaySim, type EbaySim, type EbaySimOptions } from '../../src/alerts/ebay-sim.ts'
import { createEbayCatalogue, normalisePhrase } from '../../src/alerts/ebay-sim.catalogue.ts'
import { waitFor } from '../helpers/infra.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

const T0 = Date.UTC(2026, 0, 5, 12, 30)
const BASIC = `Basic ${Buffer.from('bourse-sim:bourse-sim-secret').toString('base64')}`
const FORM = 'grant_type=client_credentials&scope=https%3A%2F%2Fapi.ebay.com%2Foauth%2Fapi_scope'
const SEARCH = '/buy/browse/v1/item_summary/search'

async function startSim(options: EbaySimOptions = {}): Promise<{ sim: EbaySim; url: string }> {
  const sim = createEbaySim({ now: () => T0, ...options })
  closers.push(() => sim.close())
  const { url } = await sim.listen(0, '127.0.0.1')
  return { sim, url }
}

function client(url: string, now?: () => number): EbayClient {
  const ebay = createEbayClient({
    baseUrl: url,
    clientId: 'bourse-sim',
    clientSecret: 'bourse-sim-secret',
    marketplaceId: 'EBAY_US',
    timeoutMs: 10_000,
    ...(now && { now }),
  })
  closers.push(() => ebay.close())
  return ebay
}

/** One request; status, headers and the body (JSON when it is). */
async function call(url: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {}) {
  const response = await request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, ...(init.body !== undefined && { body: init.body }) })
  const text = await response.body.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: response.statusCode, headers: response.headers, text, json: json as Record<string, unknown> }
}

async function token(url: string): Promise<string> {
  const answer = await call(`${url}/identity/v1/oauth2/token`, {
    method: 'POST',
    headers: { authorization: BASIC, 'content-type': 'application/x-www-form-urlencoded' },
    body: FORM,
  })
  assert.equal(answer.status, 200, answer.text)
  return answer.json.access_token as string
}

async function search(url: string, bearer: string, query: string, headers: Record<string, string> = {}) {
  return call(`${url}${SEARCH}?${query}`, { headers: { authorization: `Bearer ${bearer}`, 'x-ebay-c-marketplace-id': 'EBAY_US', ...headers } })
}

/** The cheapest total of a search, in cents. */
const cheapestCents = (items: Array<{ total: string }>) => BigInt(items[0]!.total.replace('.', ''))

describe('catalogue', () => {
  test('is the same for a seed, and another for another seed', async () => {
    const [a, b, c] = await Promise.all([startSim({ seed: 42 }), startSim({ seed: 42 }), startSim({ seed: 43 })])
    const [ta, tb, tc] = await Promise.all([token(a.url), token(b.url), token(c.url)])
    for (const phrase of ['drone', 'vintage%20lamp', 'usb%20c%20cable']) {
      const query = `q=${phrase}&sort=price&limit=200`
      const [ra, rb, rc] = await Promise.all([search(a.url, ta, query), search(b.url, tb, query), search(c.url, tc, query)])
      assert.equal(ra.status, 200)
      assert.equal(ra.text.replaceAll(a.url, 'BASE'), rb.text.replaceAll(b.url, 'BASE'), 'same seed, same answer')
      const ids = (r: typeof ra) => (r.json.itemSummaries as Array<{ itemId: string }>).map((i) => i.itemId)
      assert.notDeepEqual(ids(ra), ids(rc), 'another seed, other items')
    }
  })

  test('each phrase has 30 to 200 items with unique eBay-shaped ids; phrases are normalised', () => {
    const catalogue = createEbayCatalogue({ seed: 9 })
    const counts: number[] = []
    for (let i = 0; i < 60; i++) {
      const items = catalogue.items(`thing ${i}`, 1000)
      counts.push(items.length)
      assert.equal(new Set(items.map((item) => item.itemId)).size, items.length)
      for (const item of items) {
        assert.match(item.itemId, /^v1\|\d{12}\|0$/)
        assert.ok(item.title.toLowerCase().includes(`thing ${i}`), item.title)
        assert.ok(Number.isInteger(item.priceCents) && item.priceCents >= 1)
      }
    }
    assert.ok(Math.min(...counts) >= 30 && Math.max(...counts) <= 200, `${Math.min(...counts)} to ${Math.max(...counts)}`)
    assert.ok(Math.max(...counts) - Math.min(...counts) > 50, 'sizes vary')
    assert.equal(normalisePhrase('  Mechanical\t KEYBOARD '), 'mechanical keyboard')
    assert.deepEqual(catalogue.items('  Mechanical\t KEYBOARD ', 5), catalogue.items('mechanical keyboard', 5))
    // Walking forward, backward and across restocks gives the same prices as walking fresh.
    const fresh = createEbayCatalogue({ seed: 9 })
    for (const step of [1000, 1001, 1100, 990, 1200, 1000]) assert.deepEqual(catalogue.items('thing 3', step), fresh.items('thing 3', step), `step ${step}`)
  })

  test('simulated time is now() × timeScale in steps of stepMs; prices restock every epoch', () => {
    const catalogue = createEbayCatalogue({ seed: 1, timeScale: 60 })
    const step = catalogue.stepAt(T0)
    assert.equal(catalogue.stepAt(T0 + 60_000), step + 1, 'a simulated hour per real minute')
    assert.equal(catalogue.stepAt(catalogue.timeOfStep(step + 5)), step + 5)
    assert.equal(catalogue.stepAt(catalogue.timeOfStep(step + 5) + 29_000), step + 5, 'the middle of the step')
    const restock = Math.ceil(step / 168) * 168
    assert.equal(catalogue.moveAt('drone', restock), 'restock')
    const prices = (s: number) => catalogue.items('drone', s).map((i) => i.priceCents)
    assert.deepEqual(prices(restock), prices(restock + 168), 'every restock goes back to the base prices')
    assert.notDeepEqual(prices(restock), prices(restock + 100))
  })

  test('prices move with simulated time: a drop, a rise and a flat hour found ahead, and seen through HTTP', async () => {
    const clock = { at: T0 }
    const { sim, url } = await startSim({ seed: 5, now: () => clock.at })
    const ebay = client(url, () => clock.at)
    const catalogue = sim.catalogue
    const from = catalogue.stepAt(T0)
    const searchAt = async (step: number) => {
      clock.at = catalogue.timeOfStep(step)
      const result = await ebay.search('espresso machine')
      assert.deepEqual(result.items, catalogue.cheapest('espresso machine', { step }))
      return result.items
    }
    const drop = catalogue.findStep('espresso machine', 'drop', { from })
    const [beforeDrop, afterDrop] = [await searchAt(drop - 1), await searchAt(drop)]
    assert.ok(cheapestCents(afterDrop) * 10n < cheapestCents(beforeDrop) * 9n, `${beforeDrop[0]!.total} then ${afterDrop[0]!.total}`)

    const rise = catalogue.findStep('espresso machine', 'rise', { from })
    const [beforeRise, afterRise] = [await searchAt(rise - 1), await searchAt(rise)]
    assert.ok(cheapestCents(afterRise) * 10n > cheapestCents(beforeRise) * 11n, `${beforeRise[0]!.total} then ${afterRise[0]!.total}`)

    const flat = catalogue.findStep('espresso machine', 'flat', { from })
    assert.deepEqual(await searchAt(flat), await searchAt(flat - 1))
    assert.equal(catalogue.moveAt('espresso machine', flat), 'flat')

    // Over a simulated week most hours move something.
    const moves = new Set(Array.from({ length: 168 }, (_, i) => catalogue.moveAt('espresso machine', from + i)))
    assert.deepEqual([...moves].sort(), ['drift', 'drop', 'flat', 'restock', 'rise'])
  })
})

describe('token endpoint', () => {
  test('speaks the client credentials grant, and OAuth errors', async () => {
    const clock = { at: T0 }
    const { sim, url } = await startSim({ now: () => clock.at })
    const tokenUrl = `${url}/identity/v1/oauth2/token`
    const good = await call(tokenUrl, { method: 'POST', headers: { authorization: BASIC, 'content-type': 'application/x-www-form-urlencoded' }, body: FORM })
    assert.equal(good.status, 200)
    assert.equal(good.json.expires_in, 7200)
    assert.equal(good.json.token_type, 'Application Access Token')
    assert.match(good.json.access_token as string, /^v\^1\.1#[\x21-\x7e]+$/)

    const refused = async (headers: Record<string, string>, body: string, status: number, error: string, method: 'GET' | 'POST' = 'POST') => {
      const answer = await call(tokenUrl, { method, headers, ...(method === 'POST' && { body }) })
      assert.equal(answer.status, status, answer.text)
      assert.equal(answer.json.error, error)
      assert.equal(typeof answer.json.error_description, 'string')
    }
    const form = { 'content-type': 'application/x-www-form-urlencoded' }
    await refused({ ...form, authorization: `Basic ${Buffer.from('bourse-sim:wrong').toString('base64')}` }, FORM, 401, 'invalid_client')
    await refused(form, FORM, 401, 'invalid_client')
    await refused({ ...form, authorization: BASIC }, 'grant_type=password&scope=https%3A%2F%2Fapi.ebay.com%2Foauth%2Fapi_scope', 400, 'unsupported_grant_type')
    await refused({ ...form, authorization: BASIC }, 'grant_type=client_credentials', 400, 'invalid_scope')
    await refused({ 'content-type': 'application/json', authorization: BASIC }, '{}', 400, 'invalid_request')
    await refused({ authorization: BASIC }, '', 405, 'invalid_request', 'GET')
    assert.deepEqual([sim.stats.tokenRequests, sim.stats.tokensIssued, sim.stats.tokenRefused], [7, 1, 6])

    // Tokens expire when they say, or earlier with tokenLifetimeMs.
    const bearer = good.json.access_token as string
    clock.at += 7199_000
    assert.equal((await search(url, bearer, 'q=drone')).status, 200)
    clock.at += 1000
    const expired = await search(url, bearer, 'q=drone')
    assert.equal(expired.status, 401)
    assert.deepEqual(expired.json, { errors: [{ errorId: 1001, domain: 'OAuth', category: 'REQUEST', message: 'Invalid access token', longMessage: 'Invalid access token' }] })
    sim.setFaults({ tokenLifetimeMs: 500 })
    const short = await token(url)
    assert.equal((await search(url, short, 'q=drone')).status, 200)
    clock.at += 500
    assert.equal((await search(url, short, 'q=drone')).status, 401)
  })
})

describe('search endpoint', () => {
  test('answers the Browse API shape: items, total, paging, sort, currency filter, marketplace', async () => {
    const { sim, url } = await startSim({ seed: 4 })
    const bearer = await token(url)
    const step = sim.catalogue.stepAt(T0)
    const all = sim.catalogue.items('drone', step)

    const first = await search(url, bearer, 'q=drone&sort=price&limit=20')
    assert.equal(first.status, 200)
    assert.equal(first.headers['content-type'], 'application/json')
    assert.equal(first.json.total, all.length)
    assert.equal(first.json.limit, 20)
    assert.equal(first.json.offset, 0)
    assert.equal(first.json.href, `${url}${SEARCH}?q=drone&sort=price&limit=20`)
    assert.equal(first.json.next, `${url}${SEARCH}?q=drone&sort=price&limit=20&offset=20`)
    const items = first.json.itemSummaries as Array<Record<string, unknown>>
    assert.equal(items.length, 20)
    const item = items[0]!
    for (const field of ['itemId', 'title', 'price', 'itemHref', 'itemWebUrl', 'seller', 'condition', 'conditionId', 'buyingOptions']) {
      assert.ok(field in item, `${field} in ${JSON.stringify(item)}`)
    }
    assert.match((item.price as { value: string }).value, /^\d+\.\d\d$/)
    assert.equal(item.itemHref, `${url}/buy/browse/v1/item/${encodeURIComponent(item.itemId as string)}`)
    const prices = items.map((i) => Number((i.price as { value: string }).value))
    assert.deepEqual(prices, [...prices].sort((a, b) => a - b), 'sort=price: cheapest first')
    assert.ok(items.some((i) => !('shippingOptions' in i)), 'some items state no shipping')
    assert.ok(items.some((i) => 'shippingOptions' in i))

    const second = await search(url, bearer, 'q=drone&sort=price&limit=20&offset=20')
    assert.deepEqual(
      (second.json.itemSummaries as Array<{ itemId: string }>).map((i) => i.itemId),
      sim.catalogue.search('drone', { step, marketplaceId: 'EBAY_US', sort: 'price', offset: 20, limit: 20 }).items.map((i) => i.itemId),
    )
    assert.equal(second.json.prev, `${url}${SEARCH}?q=drone&sort=price&limit=20&offset=0`)

    const dear = await search(url, bearer, 'q=drone&sort=-price')
    const dearPrices = (dear.json.itemSummaries as Array<{ price: { value: string } }>).map((i) => Number(i.price.value))
    assert.equal(dearPrices.length, Math.min(50, all.length), 'limit 50 by default')
    assert.deepEqual(dearPrices, [...dearPrices].sort((a, b) => b - a))

    const bestMatch = await search(url, bearer, 'q=drone&limit=5')
    assert.deepEqual(
      (bestMatch.json.itemSummaries as Array<{ itemId: string }>).map((i) => i.itemId),
      all.slice(0, 5).map((i) => i.itemId),
    )

    const pounds = await search(url, bearer, `q=drone&limit=200&filter=${encodeURIComponent('priceCurrency:GBP,buyingOptions:{FIXED_PRICE|AUCTION}')}`, {
      'x-ebay-c-marketplace-id': 'EBAY_GB',
    })
    assert.equal(pounds.status, 200, pounds.text)
    const poundItems = pounds.json.itemSummaries as Array<{ price: { currency: string } }>
    assert.ok(poundItems.length > 0 && poundItems.every((i) => i.price.currency === 'GBP'))
    const dollarsOnly = await search(url, bearer, `q=drone&limit=200&filter=priceCurrency:USD`)
    assert.equal(dollarsOnly.json.total, all.filter((i) => i.currency === 'USD').length)

    sim.setItems('nothing', [])
    const none = await search(url, bearer, 'q=nothing&limit=20')
    assert.deepEqual(none.json, { href: `${url}${SEARCH}?q=nothing&limit=20`, total: 0, limit: 20, offset: 0 })
  })

  test('errors have eBay\'s shape: 401 without a token, 400 for bad parameters', async () => {
    const { sim, url } = await startSim()
    const bearer = await token(url)
    const missing = await call(`${url}${SEARCH}?q=drone`)
    assert.equal(missing.status, 401)
    assert.equal((missing.json.errors as Array<{ errorId: number }>)[0]!.errorId, 1001)
    assert.equal((await search(url, 'v^1.1#unknown', 'q=drone')).status, 401)
    for (const query of ['', 'q=', 'q=drone&limit=0', 'q=drone&limit=201', 'q=drone&limit=abc', 'q=drone&offset=10001', 'q=drone&sort=cheapest', 'q=drone&filter=priceCurrency:usd']) {
      const answer = await search(url, bearer, query)
      assert.equal(answer.status, 400, query)
      const [error] = answer.json.errors as Array<Record<string, unknown>>
      assert.equal(typeof error!.errorId, 'number', query)
      assert.equal(error!.category, 'REQUEST')
      assert.equal(typeof error!.message, 'string')
    }
    assert.equal((await search(url, bearer, 'q=drone', { 'x-ebay-c-marketplace-id': 'EBAY_XX' })).status, 400)
    assert.equal((await call(`${url}/buy/browse/v1/other`)).status, 404)
    assert.deepEqual([sim.stats.unauthorized, sim.stats.badRequests, sim.stats.otherRequests, sim.stats.searchesAnswered], [2, 9, 1, 0])
  })
})

describe('faults', () => {
  test('are read and set over HTTP, validated, and used up one request at a time', async () => {
    const { sim, url } = await startSim()
    const faults = await call(`${url}/sim/faults`)
    assert.deepEqual(faults.json, {
      serverErrors: 0,
      rateLimited: 0,
      retryAfterSeconds: 1,
      malformedAnswers: 0,
      itemsWithoutPrice: 0,
      tokenFailures: 0,
      expiredTokens: 0,
      tokenLifetimeMs: null,
      latencyMs: 0,
    })
    const post = (body: unknown) => call(`${url}/sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    for (const [body, message] of [
      [{ serverErrors: -1 }, /serverErrors must be a whole number from 0/],
      [{ latencyMs: 'slow' }, /latencyMs must be/],
      [{ surprise: 1 }, /unknown fault "surprise"/],
      [[], /must be a JSON object/],
    ] as const) {
      const answer = await post(body)
      assert.equal(answer.status, 400)
      assert.match((answer.json.error as { message: string }).message, message)
    }
    const set = await post({ serverErrors: 2, rateLimited: 1, retryAfterSeconds: 3, malformedAnswers: 1, tokenFailures: 1 })
    assert.equal(set.status, 200)
    assert.equal(set.json.serverErrors, 2)

    assert.equal((await call(`${url}/identity/v1/oauth2/token`, { method: 'POST', headers: { authorization: BASIC, 'content-type': 'application/x-www-form-urlencoded' }, body: FORM })).status, 500)
    const bearer = await token(url)
    const limited = await search(url, bearer, 'q=drone')
    assert.equal(limited.status, 429)
    assert.equal(limited.headers['retry-after'], '3')
    assert.equal((await search(url, bearer, 'q=drone')).status, 500)
    assert.equal((await search(url, bearer, 'q=drone')).status, 500)
    const cut = await search(url, bearer, 'q=drone')
    assert.equal(cut.status, 200)
    assert.equal(cut.json, undefined, 'not JSON')
    assert.equal((await search(url, bearer, 'q=drone')).status, 200)

    const stats = await call(`${url}/sim/stats`)
    assert.deepEqual(stats.json, {
      tokenRequests: 2,
      tokensIssued: 1,
      tokenErrors: 1,
      tokenRefused: 0,
      searchRequests: 5,
      searchesAnswered: 1,
      unauthorized: 0,
      badRequests: 0,
      serverErrors: 2,
      rateLimited: 1,
      malformedAnswers: 1,
      otherRequests: 0,
      inFlight: 0,
    })
    assert.deepEqual(stats.json, { ...sim.stats })
    assert.deepEqual((await call(`${url}/sim/faults`)).json, { ...sim.faults })
    assert.equal(sim.faults.serverErrors, 0)
  })

  test('POST /sim/items fixes the answer of a phrase; null gives it back to the catalogue', async () => {
    const { url } = await startSim()
    const bearer = await token(url)
    const items = [{ itemId: 'v1|111111111111|0', title: 'Odd', price: { value: 'oops', currency: 'USD' } }]
    const post = (body: unknown) => call(`${url}/sim/items`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    assert.equal((await post({ phrase: 'Odd Thing', items })).status, 200)
    assert.deepEqual((await search(url, bearer, 'q=odd%20thing')).json.itemSummaries, items)
    assert.equal((await post({ phrase: 'odd thing', items: null })).status, 200)
    assert.notDeepEqual((await search(url, bearer, 'q=odd%20thing')).json.itemSummaries, items)
    assert.equal((await post({ items })).status, 400)
  })

  test('latency delays every search; close() answers the waiting ones 503 at once', async () => {
    const { sim, url } = await startSim({ faults: { latencyMs: 80 } })
    const bearer = await token(url)
    const started = performance.now()
    assert.equal((await search(url, bearer, 'q=drone')).status, 200)
    assert.ok(performance.now() - started >= 79, 'waited the latency')

    sim.setFaults({ latencyMs: 60_000 })
    const waiting = search(url, bearer, 'q=drone')
    await waitFor(() => sim.stats.inFlight === 1, { what: 'the search to wait', intervalMs: 5 })
    const closedAt = performance.now()
    await sim.close()
    assert.equal((await waiting).status, 503)
    assert.ok(performance.now() - closedAt < 2000, 'not the 60 s latency')
    assert.equal(sim.stats.inFlight, 0)
  })
})
