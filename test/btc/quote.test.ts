/** The cached quote's validation: whatever is missing or garbled is no quote for its currency. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseBtcQuote } from '../../src/btc/quote.ts'

const good = { price: '61234.50', source: 'coinbase', fetched_at: '2026-12-07T01:00:00.123Z' }

describe('parseBtcQuote', () => {
  it('reads every valid currency exactly', () => {
    const quote = parseBtcQuote(JSON.stringify({ EUR: good, GBP: { ...good, price: '42000.123456789012' }, USD: good, CHF: good }))
    assert.deepEqual(Object.keys(quote).sort(), ['EUR', 'GBP', 'USD'])
    assert.equal(quote.GBP?.price, '42000.123456789012')
    assert.equal(quote.EUR?.source, 'coinbase')
    assert.equal(quote.EUR?.fetchedAt.toISOString(), '2026-12-07T01:00:00.123Z')
  })

  it('leaves out a garbled currency and keeps the others', () => {
    const garbled = [
      { ...good, price: 61234.5 },
      { ...good, price: '0' },
      { ...good, price: '0.00' },
      { ...good, price: '-1' },
      { ...good, price: '1e5' },
      { ...good, price: '' },
      { ...good, source: '' },
      { ...good, source: 3 },
      { ...good, fetched_at: 'yesterday' },
      { ...good, fetched_at: '2026-13-45T99:00:00Z' },
      { ...good, fetched_at: 1765069200000 },
      { price: '1' },
      null,
      'x',
      [],
    ]
    for (const entry of garbled) {
      const quote = parseBtcQuote(JSON.stringify({ EUR: entry, USD: good }))
      assert.equal(quote.EUR, undefined, JSON.stringify(entry))
      assert.equal(quote.USD?.price, '61234.50')
    }
  })

  it('is empty for no value, invalid JSON or a value that is not an object', () => {
    for (const text of [null, '', 'not json', '[]', '"EUR"', 'null', '42']) assert.deepEqual(parseBtcQuote(text), {}, String(text))
  })
})
