/** `bourse btc-price` as a real process against the simulation: bad settings named, the quote written, each provider in the heartbeat and the metrics. */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createBtcPriceSim } from '../../src/btc/btc-price-sim.ts'
import { BTC_QUOTE_KEY, readBtcQuote } from '../../src/btc/quote.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { heartbeatKey } from '../../src/platform/heartbeat.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'
import { declaredType, sampleValue, scrapeMetrics } from '../helpers/prometheus.ts'

const sim = createBtcPriceSim({ stepMs: 0 })
let url = ''
let redis: Redis
const services: ServiceProcess[] = []
before(async () => {
  url = (await sim.listen(0)).url
  redis = await openTestRedis()
})
after(async () => {
  for (const service of services) await service.kill()
  await sim.close()
  await closeTestRedis(redis)
})

test('the BTC settings have their defaults, and a bad one is named', async () => {
  const config = loadConfig({})
  assert.equal(config.BTC_PROVIDER_URLS, 'coinbase=https://api.coinbase.com,coingecko=https://api.coingecko.com,kraken=https://api.kraken.com')
  assert.equal(config.BTC_PROVIDER_TIMEOUT_MS, 5000)
  assert.equal(config.BTC_POLL_INTERVAL_MS, 15000)
  assert.equal(config.BTC_OUTLIER_PERCENT, '10')
  assert.equal(config.BTC_PRICE_MAX_AGE_MS, 60000)
  assert.equal(config.COINGECKO_API_KEY, undefined)
  assert.throws(() => loadConfig({ BTC_OUTLIER_PERCENT: '0' }), /BTC_OUTLIER_PERCENT/)
  assert.equal(loadConfig({ BTC_OUTLIER_PERCENT: '2.5' }).BTC_OUTLIER_PERCENT, '2.5')
  const bad = await runCli(['btc-price'], testEnv({ BTC_PROVIDER_URLS: `coinbase=${url},bitstamp=${url}` }))
  assert.equal(bad.code, 2, bad.stderr)
  assert.match(bad.stderr, /unknown provider "bitstamp"/)
})

test('polls the simulation into Redis, shows each provider in its heartbeat and metrics, stops on SIGTERM', async () => {
  await redis.del(BTC_QUOTE_KEY)
  sim.setPrices({ EUR: '61234.50', GBP: '52000.00', USD: '70000.99' })
  sim.setFaults({ coinbase: { failures: 1_000_000 } })
  const env = testEnv({ BTC_PROVIDER_URLS: `coinbase=${url},kraken=${url}`, HEARTBEAT_INTERVAL_MS: '200' })
  const service = startService(['btc-price', '--interval-ms', '100', '--metrics-port', '0'], env)
  services.push(service)
  const [, metricsUrl] = await service.waitForOutput(/metrics at (http:\/\/\S+)/, 60_000)
  const eur = await waitFor(async () => (await readBtcQuote(redis)).EUR, { what: 'the quote', timeoutMs: 15_000 })
  assert.deepEqual(eur, { price: '61234.5', source: 'kraken', fetchedAt: eur.fetchedAt })
  const beat = await waitFor(async () => {
    const [key] = await redis.keys(heartbeatKey('btc-price', '*'))
    const text = key === undefined ? null : await redis.get(key)
    return text !== null && text.includes('"kraken":{"lastSuccessAt":"20') ? text : undefined
  }, { what: 'the heartbeat with the providers', timeoutMs: 15_000 })
  assert.match(beat, /"coinbase":\{[^}]*"failures":[1-9]/)
  assert.match(beat, /"kraken":\{"lastSuccessAt":"20/)
  const scrape = await waitFor(async () => {
    const parsed = await scrapeMetrics(metricsUrl!)
    return sampleValue(parsed.series, 'bourse_btc_provider_successes_total', { provider: 'kraken' }) > 0 ? parsed : undefined
  }, { what: 'a scrape with kraken answering', timeoutMs: 15_000 })
  assert.ok(sampleValue(scrape.series, 'bourse_btc_provider_failures_total', { provider: 'coinbase' }) >= 1)
  assert.equal(sampleValue(scrape.series, 'bourse_btc_provider_successes_total', { provider: 'coinbase' }), 0)
  assert.equal(sampleValue(scrape.series, 'bourse_btc_provider_timeouts_total', { provider: 'kraken' }), 0)
  assert.equal(sampleValue(scrape.series, 'bourse_btc_provider_last_success_seconds', { provider: 'coinbase' }), 0)
  const krakenAt = sampleValue(scrape.series, 'bourse_btc_provider_last_success_seconds', { provider: 'kraken' })
  assert.ok(Math.abs(krakenAt - Date.now() / 1000) < 60, `kraken's last success ${krakenAt} is now`)
  assert.equal(sampleValue(scrape.series, 'bourse_btc_provider_timeout_seconds', {}), 5)
  assert.equal(declaredType(scrape.text, 'bourse_btc_provider_failures_total'), 'counter')
  assert.equal(declaredType(scrape.text, 'bourse_btc_provider_last_success_seconds'), 'gauge')
  sim.setFaults({ coinbase: { failures: 0 } })
  assert.equal(await service.stop(), 0, service.output())
})
