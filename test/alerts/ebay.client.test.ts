/** The eBay client against the eBay simulation, over real HTTP. */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import fc from 'fast-check'
import {
  createEbayClient,
  type EbayClient,
  type EbayClientOptions,
  EbayError,
  parseAmount,
  parseSearchAnswer,
  retryAfterMs,
  selectCheapestItems,
} from '../../src/alerts/ebay.client.ts'
import { createEbaySim, type EbaySim, type EbaySimOptions } from '../../src/alerts/ebay-sim.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

/** A fixed point in time (a Monday 12:00 UTC), in the middle of a simulated hour. */
const T0 = Date.UTC(2026, 0, 5, 12, 30)

/** A clock tests move by hand. */
function manualClock(start = T0) {
  let at = start
  return { now: () => at, set: (ms: number) => (at = ms), advance: (ms: number) => (at += ms) }
}

async function startSim(options: EbaySimOptions = {}): Promise<{ sim: EbaySim; url: string }> {
  const sim = createEbaySim({ now: () => T0, ...options })
  closers.push(() => sim.close())
  const { url } = await sim.listen(0, '127.0.0.1')
  return { sim, url }
}

function client(url: string, options: Partial<EbayClientOptions> = {}): EbayClient {
  const ebay = createEbayClient({
    baseUrl: url,
    clientId: 'bourse-sim',
    clientSecret: 'bourse-sim-secret',
    marketplaceId: 'EBAY_US',
    timeoutMs: 5000,
    ...options,
  })
  closers.push(() => ebay.close())
  return ebay
}

/** The EbayError `promise` rejects with; fails when it fulfils or rejects with something else. */
async function ebayError(promise: Promise<unknown>): Promise<EbayError> {
  try {
    await promise
  } catch (err) {
    assert.ok(err instanceof EbayError, `expected an EbayError, got ${String(err)}`)
    return err
  }
  assert.fail('expected an EbayError')
}

/** An item of a search answer, as eBay shows it. */
function summary(itemId: string, price: string | undefined, shipping?: string[] | null, extra: Record<string, unknown> = {}) {
  return {
    itemId,
    title: `Item ${itemId}`,
    ...(price !== undefined && { price: { value: price, currency: 'USD' } }),
    ...(shipping && {
      shippingOptions: shipping.map((value) => ({ shippingCostType: 'FIXED', shippingCost: { value, currency: 'USD' } })),
    }),
    itemWebUrl: `https://www.ebay.com/itm/${itemId.replace(/\D/g, '') || '1'}`,
    image: { imageUrl: `https://i.ebayimg.com/images/g/${itemId.replace(/\W/g, '')}/s-l225.jpg` },
    ...extra,
  }
}

describe('token', () => {
  test('is fetched once for concurrent searches, then cached until shortly before it expires', async () => {
    const clock = manualClock()
    const { sim, url } = await startSim({ now: clock.now })
    const ebay = client(url, { now: clock.now })
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => ebay.search(`phrase ${i % 5}`)))
    assert.ok(results.every((r) => r.items.length === 20))
    assert.equal(sim.stats.tokenRequests, 1)
    assert.equal(sim.stats.searchRequests, 25)

    // 7200 s announced: still good 7139 s later, renewed within its last minute.
    clock.advance(7139_000)
    await ebay.search('drone')
    assert.equal(sim.stats.tokenRequests, 1)
    clock.advance(2000)
    await Promise.all([ebay.search('drone'), ebay.search('kayak'), ebay.search('lamp')])
    assert.equal(sim.stats.tokenRequests, 2)
    assert.equal(sim.stats.unauthorized, 0, 'never sent an expired token')
  })

  test('a short lifetime is renewed 10% early', async () => {
    const clock = manualClock()
    const { sim, url } = await startSim({ now: clock.now, tokenExpiresInSeconds: 100 })
    const ebay = client(url, { now: clock.now })
    await ebay.search('drone')
    clock.advance(89_000)
    await ebay.search('drone')
    assert.equal(sim.stats.tokenRequests, 1)
    clock.advance(2000)
    await ebay.search('drone')
    assert.equal(sim.stats.tokenRequests, 2)
  })

  test('a 401 from search gets one new token, shared by the searches refused together', async () => {
    const simClock = manualClock()
    const { sim, url } = await startSim({ now: simClock.now })
    // The client's clock stands still: it believes its token good, eBay says it expired.
    const ebay = client(url, { now: () => T0 })
    await ebay.search('drone')
    simClock.advance(3 * 3600_000)
    const results = await Promise.all(Array.from({ length: 10 }, () => ebay.search('drone')))
    assert.ok(results.every((r) => r.items.length === 20))
    assert.equal(sim.stats.unauthorized, 10)
    assert.equal(sim.stats.tokenRequests, 2, 'one new token for the ten refused searches')
    assert.equal(sim.stats.searchRequests, 21)
  })

  test('a token expired early (fault) is renewed once; a second 401 is auth_failed', async () => {
    const { sim, url } = await startSim({ faults: { expiredTokens: 1 } })
    const ebay = client(url)
    assert.equal((await ebay.search('drone')).items.length, 20)
    assert.deepEqual([sim.stats.tokenRequests, sim.stats.unauthorized, sim.stats.searchesAnswered], [2, 1, 1])

    sim.setFaults({ expiredTokens: 2 })
    const err = await ebayError(ebay.search('drone'))
    assert.equal(err.code, 'auth_failed')
    assert.equal(err.transient, false)
    assert.equal(err.status, 401)
    assert.equal(err.errorId, 1001)
    assert.match(err.message, /Invalid access token/)
    assert.equal(sim.stats.tokenRequests, 3, 'one refresh, not a loop')
  })

  test('a token endpoint answering 500 is unavailable (transient); the next search gets its token', async () => {
    const { sim, url } = await startSim({ faults: { tokenFailures: 1 } })
    const ebay = client(url)
    const err = await ebayError(ebay.search('drone'))
    assert.equal(err.code, 'unavailable')
    assert.equal(err.transient, true)
    assert.equal(err.status, 500)
    assert.equal(sim.stats.searchRequests, 0)
    assert.equal((await ebay.search('drone')).items.length, 20)
    assert.equal(sim.stats.tokenRequests, 2)
  })

  test('refused credentials are auth_failed, not transient, with the OAuth error', async () => {
    const { sim, url } = await startSim({ clientSecret: 'other-secret' })
    const ebay = client(url)
    const err = await ebayError(ebay.search('drone'))
    assert.equal(err.code, 'auth_failed')
    assert.equal(err.transient, false)
    assert.equal(err.status, 401)
    assert.match(err.message, /invalid_client/)
    assert.equal(sim.stats.tokenRefused, 1)
  })

  test('no server (connection refused) and a hung one (timeout) are unavailable, transient', async () => {
    const { sim, url } = await startSim()
    await sim.close()
    const refused = await ebayError(client(url).search('drone'))
    assert.equal(refused.code, 'unavailable')
    assert.equal(refused.transient, true)
    assert.equal(refused.status, null)
    assert.match(refused.message, /ECONNREFUSED/)

    // Accepts the connection and reads the request, and never answers.
    const hung: Server = createServer(() => {})
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
    closers.push(async () => {
      hung.closeAllConnections()
      await new Promise((resolve) => hung.close(resolve))
    })
    const started = performance.now()
    const timedOut = await ebayError(client(`http://127.0.0.1:${(hung.address() as AddressInfo).port}`, { timeoutMs: 300 }).search('drone'))
    const ms = performance.now() - started
    assert.equal(timedOut.code, 'unavailable')
    assert.equal(timedOut.transient, true)
    assert.match(timedOut.message, /no answer within 300 ms/)
    assert.ok(ms >= 290 && ms < 3000, `gave up after ${ms} ms`)
  })

  test('an answer without a usable token is bad_answer', async () => {
    const odd: Server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ access_token: 'has spaces in it', expires_in: 7200 }))
    })
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve))
    closers.push(() => new Promise((resolve) => odd.close(resolve)))
    const err = await ebayError(client(`http://127.0.0.1:${(odd.address() as AddressInfo).port}`).search('drone'))
    assert.equal(err.code, 'bad_answer')
    assert.equal(err.transient, true)
    assert.match(err.message, /access_token/)
  })
})

describe('search', () => {
  test('answers what the catalogue says: the 20 cheapest by price plus shipping, with and without shipping', async () => {
    const { sim, url } = await startSim({ seed: 7 })
    const ebay = client(url)
    let twoOptions = 0
    for (const phrase of ['drone', 'Mechanical  Keyboard', 'vintage lamp', 'kayak paddle']) {
      const result = await ebay.search(phrase)
      assert.deepEqual(result.items, sim.catalogue.cheapest(phrase, { now: T0 }))
      assert.equal(result.items.length, 20)
      assert.deepEqual(result.skipped, [])
      assert.equal(result.total, sim.catalogue.items(phrase, sim.catalogue.stepAt(T0)).length)
      for (const item of result.items) {
        assert.match(item.itemId, /^v1\|\d{12}\|0$/)
        assert.match(item.price, /^\d+\.\d\d$/)
        assert.match(item.itemWebUrl, /^https:\/\/www\.ebay\.com\/itm\/\d{12}$/)
        const catalogued = sim.catalogue.items(phrase, sim.catalogue.stepAt(T0)).find((i) => i.itemId === item.itemId)!
        if (catalogued.shipping.type === 'fixed' && catalogued.shipping.costsCents.length > 1) twoOptions++
      }
      // Shipping makes a difference: some items have none (null), some a cost.
      assert.ok(result.items.some((i) => i.shipping === null))
      assert.ok(result.items.some((i) => i.shipping !== null && i.shipping !== '0.00'))
      for (let i = 1; i < result.items.length; i++) {
        const [a, b] = [result.items[i - 1]!, result.items[i]!]
        assert.ok(Number(a.total) <= Number(b.total), `${a.total} before ${b.total}`)
      }
    }
    assert.ok(twoOptions > 0, 'an item with two shipping options was among them (the cheapest one counted)')
  })

  test('sorts exactly by price + shipping, then by itemId, whatever the scale of the decimals', async () => {
    const { sim, url } = await startSim()
    sim.setItems('exact', [
      summary('v1|000000000005|0', '0.30'),
      summary('v1|000000000004|0', '0.10', ['0.20']),
      summary('v1|000000000003|0', '0.29', ['0.02']),
      summary('v1|000000000002|0', '0.3', ['0.00']),
      summary('v1|000000000006|0', '0.05', ['9.99', '0.25', '1.00']),
    ])
    const ebay = client(url)
    const { items } = await ebay.search('exact')
    assert.deepEqual(
      items.map((i) => [i.itemId, i.price, i.shipping, i.total]),
      [
        ['v1|000000000002|0', '0.3', '0.00', '0.30'],
        ['v1|000000000004|0', '0.10', '0.20', '0.30'],
        ['v1|000000000005|0', '0.30', null, '0.30'],
        ['v1|000000000006|0', '0.05', '0.25', '0.30'],
        ['v1|000000000003|0', '0.29', '0.02', '0.31'],
      ],
    )

    // Beyond a double's 15-17 digits: parseFloat sees these three as one number.
    sim.setItems('big', [
      summary('v1|000000000001|0', '99999999999999999999.99'),
      summary('v1|000000000002|0', '99999999999999999999.98', ['0.02']),
      summary('v1|000000000003|0', '99999999999999999999.98'),
      summary('v1|000000000004|0', '0012.50', null),
      summary('v1|000000000005|0', '1.25e1', ['1E-2']),
    ])
    const big = await ebay.search('big')
    assert.deepEqual(
      big.items.map((i) => [i.itemId, i.price, i.shipping, i.total]),
      [
        ['v1|000000000004|0', '12.50', null, '12.50'],
        ['v1|000000000005|0', '12.5', '0.01', '12.51'],
        ['v1|000000000003|0', '99999999999999999999.98', null, '99999999999999999999.98'],
        ['v1|000000000001|0', '99999999999999999999.99', null, '99999999999999999999.99'],
        ['v1|000000000002|0', '99999999999999999999.98', '0.02', '100000000000000000000.00'],
      ],
    )
  })

  test('keeps `limit` items (20 by default); a larger pageSize looks at more of eBay\'s page', async () => {
    const { sim, url } = await startSim({ seed: 3 })
    const ebay = client(url)
    assert.equal((await ebay.search('garden hose')).items.length, 20)
    const five = await ebay.search('garden hose', { limit: 5 })
    assert.deepEqual(five.items, sim.catalogue.cheapest('garden hose', { now: T0, limit: 5 }))
    const wide = await ebay.search('garden hose', { limit: 20, pageSize: 200 })
    assert.deepEqual(wide.items, sim.catalogue.cheapest('garden hose', { now: T0, pageSize: 200 }))
  })

  test('with a currency: eBay filters, and an item in another currency that comes anyway is skipped', async () => {
    const { sim, url } = await startSim({ seed: 11 })
    const ebay = client(url)
    // A phrase whose cheapest page has foreign items when unfiltered.
    const phrase = Array.from({ length: 200 }, (_, i) => `gadget ${i}`).find((p) =>
      sim.catalogue.cheapest(p, { now: T0, pageSize: 200, limit: 200 }).some((i) => i.currency !== 'USD'),
    )!
    const all = await ebay.search(phrase, { limit: 200, pageSize: 200 })
    assert.ok(all.items.some((i) => i.currency !== 'USD'))
    const dollars = await ebay.search(phrase, { limit: 200, pageSize: 200, currency: 'USD' })
    assert.ok(dollars.items.every((i) => i.currency === 'USD'))
    assert.deepEqual(dollars.items, sim.catalogue.cheapest(phrase, { now: T0, limit: 200, pageSize: 200, currency: 'USD' }))
    assert.equal(dollars.total, all.total - all.items.filter((i) => i.currency !== 'USD').length)

    sim.setItems('mixed', [summary('v1|000000000001|0', '5.00'), { ...summary('v1|000000000002|0', '1.00'), price: { value: '1.00', currency: 'GBP' } }])
    const mixed = await ebay.search('mixed', { currency: 'USD' })
    assert.deepEqual(mixed.items.map((i) => i.itemId), ['v1|000000000001|0'])
    assert.deepEqual(mixed.skipped, [{ itemId: 'v1|000000000002|0', reason: 'priced in GBP, not the requested USD' }])
  })

  test('no results: total 0 and no items', async () => {
    const { sim, url } = await startSim()
    sim.setItems('nothing at all', [])
    assert.deepEqual(await client(url).search('Nothing  at all'), { total: 0, items: [], skipped: [] })
  })

  test('items that cannot be used are skipped with their reason, the others kept', async () => {
    const { sim, url } = await startSim()
    sim.setItems('broken', [
      summary('v1|000000000001|0', '3.00'),
      summary('v1|000000000002|0', undefined),
      summary('v1|000000000003|0', '12,50'),
      summary('v1|000000000004|0', '-1.00'),
      { ...summary('v1|000000000005|0', '1.00'), price: { value: 1, currency: 'USD' } },
      { ...summary('x', '1.00'), itemId: undefined },
      { ...summary('v1|000000000006|0', '1.00'), title: '' },
      { ...summary('v1|000000000007|0', '1.00'), itemWebUrl: 'javascript:alert(1)' },
      { ...summary('v1|000000000008|0', '1.00'), shippingOptions: [{ shippingCostType: 'FIXED', shippingCost: { value: '1.00', currency: 'EUR' } }] },
      { ...summary('v1|000000000009|0', '1.00'), shippingOptions: [{ shippingCostType: 'FIXED', shippingCost: { value: 'free', currency: 'USD' } }] },
      summary('v1|000000000001|0', '0.50'),
      'not an item',
      { ...summary('v1|000000000010|0', '2.00'), image: { imageUrl: 'ftp://example.com/x.jpg' }, shippingOptions: [{ shippingCostType: 'CALCULATED' }] },
      { ...summary('v1|000000000011|0', '1e400') },
      { ...summary('v1|000000000012|0', '1.00'), price: { value: '1.00', currency: 'dollars' } },
    ])
    const result = await client(url).search('broken')
    assert.deepEqual(
      result.items.map((i) => [i.itemId, i.total, i.shipping, i.imageUrl]),
      [
        ['v1|000000000010|0', '2.00', null, null],
        ['v1|000000000001|0', '3.00', null, 'https://i.ebayimg.com/images/g/v10000000000010/s-l225.jpg'],
      ],
    )
    assert.deepEqual(result.skipped, [
      { itemId: 'v1|000000000002|0', reason: 'price is missing' },
      { itemId: 'v1|000000000003|0', reason: 'price.value is not a decimal string ("12,50")' },
      { itemId: 'v1|000000000004|0', reason: 'price.value is negative ("-1.00")' },
      { itemId: 'v1|000000000005|0', reason: 'price.value is not a decimal string (1)' },
      { itemId: null, reason: 'itemId is missing' },
      { itemId: 'v1|000000000006|0', reason: 'title is missing' },
      { itemId: 'v1|000000000007|0', reason: 'itemWebUrl is not an http(s) URL ("javascript:alert(1)")' },
      { itemId: 'v1|000000000008|0', reason: 'shipping is priced in "EUR", the item in USD' },
      { itemId: 'v1|000000000009|0', reason: 'shippingCost.value is not a decimal string ("free")' },
      { itemId: 'v1|000000000001|0', reason: 'the same itemId came earlier in the answer' },
      { itemId: null, reason: 'the item is not a JSON object' },
      { itemId: 'v1|000000000011|0', reason: 'price.value is out of range ("1e400")' },
      { itemId: 'v1|000000000012|0', reason: 'price.currency is not an ISO 4217 code ("dollars")' },
    ])
  })

  test('the simulation\'s items without a price are skipped, the run goes on', async () => {
    const { sim, url } = await startSim({ seed: 5, faults: { itemsWithoutPrice: 3 } })
    const result = await client(url).search('drone')
    assert.equal(result.skipped.length, 3)
    assert.ok(result.skipped.every((s) => s.reason === 'price is missing' && /^v1\|9\d{11}\|0$/.test(s.itemId!)))
    // The priceless items took three places of the page of 20.
    assert.deepEqual(result.items, sim.catalogue.cheapest('drone', { now: T0, limit: 17, pageSize: 17 }))
  })

  test('500 is unavailable, 429 rate_limited with Retry-After, a cut answer bad_answer; all transient', async () => {
    const { sim, url } = await startSim({ faults: { serverErrors: 1, rateLimited: 1, retryAfterSeconds: 7, malformedAnswers: 1 } })
    const ebay = client(url)
    const limited = await ebayError(ebay.search('drone'))
    assert.deepEqual([limited.code, limited.transient, limited.status, limited.retryAfterMs], ['rate_limited', true, 429, 7000])
    assert.match(limited.message, /request limit/)
    const down = await ebayError(ebay.search('drone'))
    assert.deepEqual([down.code, down.transient, down.status, down.retryAfterMs], ['unavailable', true, 500, null])
    assert.equal(down.errorId, 12000)
    const garbled = await ebayError(ebay.search('drone'))
    assert.deepEqual([garbled.code, garbled.transient, garbled.status], ['bad_answer', true, 200])
    assert.equal((await ebay.search('drone')).items.length, 20)
    assert.equal(sim.stats.tokenRequests, 1, 'none of these cost the token')
  })

  test('a JSON answer of the wrong shape is bad_answer', () => {
    for (const body of [null, [], 'x', {}, { total: -1 }, { total: 1.5 }, { total: '3' }, { total: 3, itemSummaries: {} }]) {
      assert.throws(
        () => parseSearchAnswer(body, { limit: 20 }),
        (err: unknown) => err instanceof EbayError && err.code === 'bad_answer' && err.transient,
        JSON.stringify(body),
      )
    }
  })

  test('a timeout while eBay is slow is unavailable', async () => {
    const { url } = await startSim({ faults: { latencyMs: 1000 } })
    const err = await ebayError(client(url, { timeoutMs: 200 }).search('drone'))
    assert.equal(err.code, 'unavailable')
    assert.match(err.message, /no answer within 200 ms/)
  })

  test('bad arguments are bad_request before any request; eBay\'s 400 too, with its message', async () => {
    const { sim, url } = await startSim()
    const ebay = client(url)
    for (const [phrase, options] of [
      ['', {}],
      ['   ', {}],
      ['a\nb', {}],
      ['x'.repeat(351), {}],
      ['drone', { limit: 0 }],
      ['drone', { limit: 201 }],
      ['drone', { limit: 2.5 }],
      ['drone', { limit: 20, pageSize: 10 }],
      ['drone', { currency: 'usd' }],
    ] as const) {
      const err = await ebayError(ebay.search(phrase, options))
      assert.equal(err.code, 'bad_request', `${phrase} ${JSON.stringify(options)}`)
      assert.equal(err.transient, false)
    }
    assert.equal(sim.stats.tokenRequests + sim.stats.searchRequests, 0)

    const elsewhere = await ebayError(client(url, { marketplaceId: 'EBAY_XX' }).search('drone'))
    assert.deepEqual([elsewhere.code, elsewhere.transient, elsewhere.status], ['bad_request', false, 400])
    assert.match(elsewhere.message, /EBAY_XX/)
  })

  test('close() is idempotent; a search after it is unavailable', async () => {
    const { url } = await startSim()
    const ebay = client(url)
    await ebay.search('drone')
    const first = ebay.close()
    assert.equal(ebay.close(), first)
    await first
    const err = await ebayError(ebay.search('drone'))
    assert.equal(err.code, 'unavailable')
    assert.match(err.message, /closed/)
  })

  test('an abort signal abandons the search with its reason', async () => {
    const { url } = await startSim({ faults: { latencyMs: 2000 } })
    const controller = new AbortController()
    const search = client(url).search('drone', { signal: controller.signal })
    setTimeout(() => controller.abort(new Error('shutting down')), 50)
    await assert.rejects(search, /shutting down/)
  })
})

describe('amounts and Retry-After', () => {
  test('amounts are exact decimal strings, exponents written out', () => {
    const text = (value: unknown) => {
      const amount = parseAmount(value)
      return 'text' in amount ? amount.text : amount.reason
    }
    assert.equal(text('0.75'), '0.75')
    assert.equal(text('1.50'), '1.50')
    assert.equal(text('0'), '0')
    assert.equal(text('007.5'), '7.5')
    assert.equal(text('1e3'), '1000')
    assert.equal(text('1.5e-2'), '0.015')
    assert.equal(text('12.50e1'), '125.0')
    assert.equal(text(' 3.10 '), '3.10')
    assert.equal(text('1e31'), 'is out of range ("1e31")')
    assert.equal(text('0.000000000000000000001'), 'is out of range ("0.000000000000000000001")')
    assert.equal(text(undefined), 'is missing')
    assert.equal(text('NaN'), 'is not a decimal string ("NaN")')
    assert.equal(text('.5'), 'is not a decimal string (".5")')
  })

  test('Retry-After in seconds or as an HTTP date; 1 s when absent or unreadable', () => {
    const now = Date.UTC(2026, 0, 5, 12, 0, 0)
    assert.equal(retryAfterMs('7', now), 7000)
    assert.equal(retryAfterMs('0', now), 0)
    assert.equal(retryAfterMs(undefined, now), 1000)
    assert.equal(retryAfterMs('soon', now), 1000)
    assert.equal(retryAfterMs(new Date(now + 30_000).toUTCString(), now), 30_000)
    assert.equal(retryAfterMs(new Date(now - 30_000).toUTCString(), now), 0)
    assert.equal(retryAfterMs(['5', '9'], now), 5000)
    assert.equal(retryAfterMs('99999999999', now), 86_400_000)
  })
})

describe('exact total and order (property)', () => {
  /** An amount in cents, written as eBay might: "12.30", "12.3" or "012.30". */
  const amountArb = fc
    .tuple(fc.bigInt({ min: 0n, max: 10n ** 24n }), fc.constantFrom('plain', 'short', 'padded'))
    .map(([cents, style]) => {
      const plain = `${cents / 100n}.${String(cents % 100n).padStart(2, '0')}`
      const text = style === 'short' && plain.endsWith('0') ? plain.slice(0, -1) : style === 'padded' ? `00${plain}` : plain
      return { cents, text }
    })
  const itemsArb = fc.uniqueArray(
    fc.record({
      id: fc.integer({ min: 0, max: 999_999 }),
      price: amountArb,
      shipping: fc.option(fc.array(amountArb, { minLength: 1, maxLength: 3 }), { nil: null }),
    }),
    { selector: (i) => i.id, maxLength: 60 },
  )
  type GeneratedItem = { id: number; price: { cents: bigint; text: string }; shipping: Array<{ cents: bigint; text: string }> | null }
  const asSummaries = (items: GeneratedItem[]) =>
    items.map((i) => summary(`v1|${String(i.id).padStart(12, '0')}|0`, i.price.text, i.shipping?.map((s) => s.text) ?? null))
  /** A total the client wrote (1 or 2 decimals), in cents. */
  const toCents = (text: string) => {
    const [whole, fraction = ''] = text.split('.')
    return BigInt(whole!) * 100n + BigInt(fraction.padEnd(2, '0'))
  }

  /** The independent computation: integer cents, BigInt. */
  const expected = (items: GeneratedItem[], limit: number) =>
    items
      .map((i) => {
        const shipping = i.shipping === null ? 0n : i.shipping.reduce((min, s) => (s.cents < min ? s.cents : min), i.shipping[0]!.cents)
        return { itemId: `v1|${String(i.id).padStart(12, '0')}|0`, total: i.price.cents + shipping }
      })
      .sort((a, b) => (a.total < b.total ? -1 : a.total > b.total ? 1 : a.itemId < b.itemId ? -1 : 1))
      .slice(0, limit)

  test('the kept items are the cheapest by total in cents, ties by itemId', () => {
    fc.assert(
      fc.property(itemsArb, fc.integer({ min: 1, max: 40 }), (items, limit) => {
        const result = selectCheapestItems(asSummaries(items), { limit })
        const want = expected(items, limit)
        assert.deepEqual(
          result.items.map((i) => i.itemId),
          want.map((w) => w.itemId),
        )
        // Totals equal in value: the written scale may be 1 or 2 decimals.
        assert.deepEqual(
          result.items.map((i) => toCents(i.total)),
          want.map((w) => w.total),
        )
        assert.deepEqual(result.skipped, [])
      }),
      { numRuns: 500 },
    )
  })

  test('the same over HTTP', async () => {
    const { sim, url } = await startSim()
    const ebay = client(url)
    await fc.assert(
      fc.asyncProperty(itemsArb, async (items) => {
        sim.setItems('property', asSummaries(items))
        const result = await ebay.search('property', { limit: 20, pageSize: 200 })
        assert.deepEqual(
          result.items.map((i) => [i.itemId, toCents(i.total)]),
          expected(items, 20).map((w) => [w.itemId, w.total]),
        )
      }),
      { numRuns: 40 },
    )
  })
})
