/** The three BTC price providers against the simulation, over real HTTP, and their parsing of bad answers. */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createBtcPriceSim } from '../../src/btc/btc-price-sim.ts'
import {
  coinbaseProvider,
  coinGeckoProvider,
  createProviders,
  krakenProvider,
  parseCoinbase,
  parseCoinGecko,
  parseKraken,
  parseProviderUrls,
  type ProviderError,
} from '../../src/btc/providers.ts'

const sim = createBtcPriceSim({ stepMs: 0 })
let url = ''
before(async () => {
  url = (await sim.listen(0)).url
})
after(() => sim.close())

const signal = () => AbortSignal.timeout(2000)

describe('providers against the simulation', () => {
  test('each provider answers the prices exactly', async () => {
    sim.setPrices({ EUR: '61234.50', GBP: '52000.07', USD: '123456789012.34' })
    const expected = { EUR: '61234.5', GBP: '52000.07', USD: '123456789012.34' }
    for (const provider of createProviders(parseProviderUrls(`coinbase=${url},coingecko=${url},kraken=${url}`), { coinGeckoApiKey: 'k' })) {
      assert.deepEqual(await provider.fetch(signal()), expected, provider.name)
    }
  })

  test('a 500, a cut body and a slow answer are ProviderErrors naming the provider', async () => {
    sim.setFaults({ coinbase: { failures: 1 }, coingecko: { garbage: 1 }, kraken: { latencyMs: 300 } })
    await assert.rejects(coinbaseProvider({ baseUrl: url }).fetch(signal()), (err: ProviderError) => err.code === 'unavailable' && err.status === 500 && /^coinbase: /.test(err.message))
    await assert.rejects(coinGeckoProvider({ baseUrl: url }).fetch(signal()), (err: ProviderError) => err.code === 'bad_answer' && /coingecko: the body is not JSON/.test(err.message))
    await assert.rejects(krakenProvider({ baseUrl: url }).fetch(AbortSignal.timeout(50)), (err: ProviderError) => err.code === 'timeout' && err.provider === 'kraken')
    sim.setFaults({ kraken: { latencyMs: 0 } })
  })

  test('an outlier answer is half the price', async () => {
    sim.setPrices({ EUR: '60000.00', GBP: '50000.00', USD: '70000.00' })
    sim.setFaults({ kraken: { outliers: 1 } })
    assert.equal((await krakenProvider({ baseUrl: url }).fetch(signal())).EUR, '30000')
    assert.equal((await krakenProvider({ baseUrl: url }).fetch(signal())).EUR, '60000')
  })

  test('the simulation refuses bad faults and prices, naming them', async () => {
    const res = await fetch(`${url}/sim/faults`, { method: 'POST', body: JSON.stringify({ bitstamp: { failures: 1 } }) })
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as { error: string }).error, /unknown provider "bitstamp"/)
    assert.throws(() => sim.setFaults({ kraken: { failures: -1 } }), /kraken.failures must be a whole number/)
    assert.throws(() => sim.setPrices({ EUR: '1.234' }), /EUR must be a decimal string/)
  })
})

describe('parsing', () => {
  test('CoinGecko numbers are read from the text, not through a float', () => {
    const quote = parseCoinGecko('{"bitcoin":{"eur":61234.123456789012345,"gbp":1e5,"usd":70000.10,"last_updated_at":1}}')
    assert.deepEqual(quote, { EUR: '61234.123456789012345', GBP: '100000', USD: '70000.1' })
  })

  test('malformed answers name the provider and the field', () => {
    assert.throws(() => parseCoinbase('{"data":{"currency":"BTC","rates":{"EUR":"1","GBP":"2"}}}'), /coinbase: data\.rates\.USD is not a positive decimal string/)
    assert.throws(() => parseCoinbase('{"data":{"currency":"BTC","rates":{"EUR":61234.5,"GBP":"2","USD":"3"}}}'), /coinbase: data\.rates\.EUR/)
    assert.throws(() => parseCoinbase('{"data":{"currency":"ETH","rates":{}}}'), /coinbase: data\.currency/)
    assert.throws(() => parseCoinGecko('{"bitcoin":{"eur":"61234.5","gbp":1,"usd":1}}'), /coingecko: bitcoin\.eur is not a positive number/)
    assert.throws(() => parseCoinGecko('{"bitcoin":{"eur":-1,"gbp":1,"usd":1}}'), /coingecko: bitcoin\.eur/)
    assert.throws(() => parseCoinGecko('{}'), /coingecko: bitcoin is missing/)
    assert.throws(() => parseKraken('{"error":[],"result":{"XXBTZEUR":{"c":["0.0","1"]}}}'), /kraken: result\.XXBTZEUR\.c\[0\]/)
    assert.throws(() => parseKraken('{"error":[],"result":{}}'), /kraken: result\.XXBTZEUR is missing/)
    assert.throws(() => parseKraken('{"error":["EGeneral:Too many requests"]}'), (err: ProviderError) => err.code === 'unavailable' && /Too many requests/.test(err.message))
    assert.throws(() => parseKraken('[1'), /kraken: the body is not JSON/)
  })

  test('BTC_PROVIDER_URLS: order kept, bad entries named', () => {
    assert.deepEqual(parseProviderUrls('kraken=http://127.0.0.1:8300/, coinbase=https://api.coinbase.com'), [
      { name: 'kraken', url: 'http://127.0.0.1:8300' },
      { name: 'coinbase', url: 'https://api.coinbase.com' },
    ])
    assert.throws(() => parseProviderUrls('bitstamp=https://x'), /unknown provider "bitstamp"/)
    assert.throws(() => parseProviderUrls('coinbase=ftp://x'), /URL of coinbase .* not http/)
    assert.throws(() => parseProviderUrls('coinbase=nope'), /URL of coinbase .* not a URL/)
    assert.throws(() => parseProviderUrls('coinbase=http://a,coinbase=http://b'), /listed twice/)
    assert.throws(() => parseProviderUrls(''), /names no provider/)
  })
})
