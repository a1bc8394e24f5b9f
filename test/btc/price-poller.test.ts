/** The BTC price poller against the simulation over HTTP and the test Redis: failover, outliers, the stored quote. */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createBtcPriceSim } from '../../src/btc/btc-price-sim.ts'
import { createPricePoller, type PricePollerOptions, withinBound } from '../../src/btc/price-poller.ts'
import { BTC_QUOTE_KEY, readBtcQuote } from '../../src/btc/quote.ts'
import { createProviders, parseProviderUrls } from '../../src/btc/providers.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { closeTestRedis, openTestRedis } from '../helpers/infra.ts'

const sim = createBtcPriceSim({ stepMs: 0 })
let url = ''
let redis: Redis
before(async () => {
  url = (await sim.listen(0)).url
  redis = await openTestRedis()
})
after(async () => {
  await sim.close()
  await closeTestRedis(redis)
})
beforeEach(async () => {
  await redis.del(BTC_QUOTE_KEY)
  sim.setFaults(Object.fromEntries(['coinbase', 'coingecko', 'kraken'].map((p) => [p, { failures: 0, latencyMs: 0, garbage: 0, outliers: 0 }])))
  sim.setPrices({ EUR: '60000.10', GBP: '50000.20', USD: '70000.30' })
})

const log = createLogger({ level: 'silent' })
const T = Date.UTC(2026, 11, 7, 1, 0)

function poller(order = 'coinbase,coingecko,kraken', extra: Partial<PricePollerOptions> = {}) {
  const urls = parseProviderUrls(order.split(',').map((name) => `${name}=${url}`).join(','))
  return createPricePoller({ redis, log }, { providers: createProviders(urls), timeoutMs: 200, outlierPercent: '10', now: () => T, ...extra })
}

test('the first provider answering is written in the agreed shape', async () => {
  const p = poller()
  assert.deepEqual(await p.poll(), { written: true, source: 'coinbase' })
  const stored = JSON.parse((await redis.get(BTC_QUOTE_KEY))!) as unknown
  const at = new Date(T).toISOString()
  assert.deepEqual(stored, {
    EUR: { price: '60000.1', source: 'coinbase', fetched_at: at },
    GBP: { price: '50000.2', source: 'coinbase', fetched_at: at },
    USD: { price: '70000.3', source: 'coinbase', fetched_at: at },
  })
  assert.equal(p.status().providers.coinbase!.lastSuccessAt, at)
})

test('failover: a failing first provider, then a slow one, hand over to the next', async () => {
  sim.setFaults({ coinbase: { failures: 1 }, coingecko: { latencyMs: 400 } })
  const p = poller()
  assert.deepEqual(await p.poll(), { written: true, source: 'kraken' })
  assert.equal((await readBtcQuote(redis)).EUR?.source, 'kraken')
  const { providers } = p.status()
  assert.equal(providers.coinbase!.failures, 1)
  assert.equal(providers.coinbase!.timeouts, 0)
  assert.equal(providers.coingecko!.timeouts, 1)
  assert.equal(providers.kraken!.successes, 1)
  assert.equal(p.stats.written, 1)
})

test('garbage from every provider: nothing written, the poll counted as failed', async () => {
  sim.setFaults({ coinbase: { garbage: 1 }, coingecko: { garbage: 1 }, kraken: { garbage: 1 } })
  const p = poller()
  assert.deepEqual(await p.poll(), { written: false, reason: 'all_failed' })
  assert.equal(await redis.get(BTC_QUOTE_KEY), null)
  assert.equal(p.stats.failedPolls, 1)
  assert.match(p.status().providers.kraken!.lastError!, /kraken: the body is not JSON/)
})

test('an outlier is held back; the next provider answering the old price is written instead', async () => {
  const p = poller()
  await p.poll()
  sim.setFaults({ coinbase: { outliers: 1 } })
  assert.deepEqual(await p.poll(), { written: true, source: 'coingecko' })
  assert.equal((await readBtcQuote(redis)).EUR?.price, '60000.1')
  assert.equal(p.status().providers.coinbase!.outliers, 1)
})

test('an outlier alone is not written; a move confirmed by the next provider is', async () => {
  const p = poller('coinbase,kraken')
  await p.poll()
  sim.setFaults({ coinbase: { outliers: 1 }, kraken: { failures: 1 } })
  assert.deepEqual(await p.poll(), { written: false, reason: 'outlier_held' })
  assert.equal((await readBtcQuote(redis)).EUR?.price, '60000.1', 'the old quote stays')
  assert.equal(p.stats.outliersHeld, 1)

  // A real move of 50%: the first provider's answer is an outlier, the second confirms it.
  sim.setPrices({ EUR: '30000.05', GBP: '25000.10', USD: '35000.15' })
  assert.deepEqual(await p.poll(), { written: true, source: 'coinbase', confirmedBy: 'kraken' })
  assert.equal((await readBtcQuote(redis)).EUR?.price, '30000.05')
})

test('the loop polls until stopped', async () => {
  const p = poller('kraken', { now: Date.now })
  p.start(20)
  const deadline = Date.now() + 3000
  while (p.stats.written < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  await p.stop()
  const written = p.stats.written
  assert.ok(written >= 3, `written ${written}`)
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(p.stats.written, written, 'no poll after stop')
})

test('the bound is exact at its edge', () => {
  const base = { EUR: '100', GBP: '100', USD: '100' }
  assert.equal(withinBound({ EUR: '110', GBP: '90', USD: '100' }, base, '10'), true)
  assert.equal(withinBound({ EUR: '110.00000001', GBP: '100', USD: '100' }, base, '10'), false)
})
