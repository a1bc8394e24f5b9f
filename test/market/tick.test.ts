/** Ticks from untrusted values (decoded Kafka messages) are validated field by field. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { priceToken, type TickResult, toTick } from '../../src/market/tick.ts'
import { decodeTick, encodeTick } from '../../src/market/tick-message.ts'

/** The reason of a refused value; fails when it was accepted. */
function reasonOf(result: TickResult | ReturnType<typeof decodeTick>): string {
  assert.equal(result.ok, false, `expected a refusal, got ${JSON.stringify(result)}`)
  return (result as { reason: string }).reason
}

describe('toTick', () => {
  it('accepts a tick with a price or with null', () => {
    assert.deepEqual(toTick({ time: '090000', stock: 'stock1', price: 12.5 }), {
      ok: true,
      tick: { time: '090000', stock: 'stock1', price: 12.5 },
    })
    assert.deepEqual(toTick({ stock: 'stock1', price: null, time: '235959' }), {
      ok: true,
      tick: { time: '235959', stock: 'stock1', price: null },
    })
  })

  const bad: Array<[string, unknown, RegExp]> = [
    ['null', null, /must be a JSON object/],
    ['a string', '090000,stock1,1', /must be a JSON object/],
    ['a number', 42, /must be a JSON object/],
    ['an array', ['090000', 'stock1', 1], /must be a JSON object/],
    ['an extra field', { time: '090000', stock: 'stock1', price: 1, volume: 3 }, /unexpected field "volume"/],
    ['a missing time', { stock: 'stock1', price: 1 }, /time must be a string/],
    ['a numeric time', { time: 90000, stock: 'stock1', price: 1 }, /time must be a string/],
    ['a time out of range', { time: '256000', stock: 'stock1', price: 1 }, /time "256000" is not hhmmss/],
    ['a time with colons', { time: '09:00:00', stock: 'stock1', price: 1 }, /time "09:00:00"/],
    ['a missing stock', { time: '090000', price: 1 }, /stock must be a string/],
    ['a bad stock name', { time: '090000', stock: 'stock 1', price: 1 }, /stock "stock 1"/],
    ['a user key as stock', { time: '090000', stock: 'user2', price: 1 }, /would overwrite a user key/],
    ['a missing price', { time: '090000', stock: 'stock1' }, /price must be a non-negative number or null/],
    ['a price as text', { time: '090000', stock: 'stock1', price: '1' }, /price must be/],
    ['a negative price', { time: '090000', stock: 'stock1', price: -1 }, /price must be/],
    ['an infinite price', { time: '090000', stock: 'stock1', price: Infinity }, /price must be/],
    ['a NaN price', { time: '090000', stock: 'stock1', price: NaN }, /price must be/],
  ]
  for (const [what, value, reason] of bad) {
    it(`refuses ${what}`, () => {
      assert.match(reasonOf(toTick(value)), reason)
    })
  }
})

describe('decodeTick', () => {
  it('decodes what encodeTick wrote', () => {
    const tick = { time: '101010', stock: 'stock2', price: null }
    const message = encodeTick('t', tick, { 'bourse-line': '7' })
    assert.equal(message.key, 'stock2')
    assert.deepEqual(message.headers, { 'bourse-line': '7' })
    assert.deepEqual(decodeTick(message.key, message.value), { ok: true, tick: { ...tick, token: '""', source: undefined } })
    const source = { partition: 2, offset: 7n }
    assert.deepEqual(decodeTick(message.key, message.value, source), { ok: true, tick: { ...tick, token: '""', source } })
  })

  it('accepts a message without key', () => {
    assert.equal(decodeTick(null, '{"time":"090000","stock":"stock1","price":1}').ok, true)
    assert.equal(decodeTick(undefined, '{"time":"090000","stock":"stock1","price":1}').ok, true)
  })

  it('refuses a key naming another stock', () => {
    assert.match(
      reasonOf(decodeTick('stock2', '{"time":"090000","stock":"stock1","price":1}')),
      /key "stock2" does not match stock "stock1"/,
    )
  })

  it('refuses empty values, text that is not JSON, and JSON that is not a tick', () => {
    assert.match(reasonOf(decodeTick('stock1', '')), /empty message value/)
    assert.match(reasonOf(decodeTick('stock1', null)), /empty message value/)
    assert.match(reasonOf(decodeTick('stock1', undefined)), /empty message value/)
    assert.match(reasonOf(decodeTick('stock1', '{"time":')), /value is not JSON/)
    assert.match(reasonOf(decodeTick('stock1', 'null')), /must be a JSON object/)
    assert.match(reasonOf(decodeTick('stock1', '[]')), /must be a JSON object/)
    assert.match(reasonOf(decodeTick('stock1', '{"time":"090000","stock":"stock1","price":1,"x":0}')), /unexpected field "x"/)
  })
})

describe('priceToken', () => {
  it('writes a number, or "" for no data', () => {
    assert.equal(priceToken(12.5), '12.5')
    assert.equal(priceToken(0), '0')
    assert.equal(priceToken(null), '""')
  })
})

describe('decodeTick fast path', () => {
  it('decodes what encodeTick writes exactly as a full JSON parse does', () => {
    const prices = [null, 0, 1, 7.5, 12.25, 1734, 0.01, 999999999.999999, 123456789012345]
    for (const price of prices) {
      for (const [time, stock] of [['090006', 'stock3'], ['235959', 'Stock_A-1'], ['000000', 'x']]) {
        const { value } = encodeTick('t', { time: time!, stock: stock!, price })
        const decoded = decodeTick(stock, value)
        assert.ok(decoded.ok)
        const { token, source, ...tick } = decoded.tick
        assert.deepEqual({ ok: true, tick }, toTick(JSON.parse(value)), value)
        assert.equal(token, priceToken(price), `${value}: the token kept is the one priceToken writes`)
        assert.equal(source, undefined)
      }
    }
  })

  it('keeps a price text as its token only when it is exactly what priceToken writes', () => {
    // Texts the canonical form allows: up to 15 integer digits, up to 10 decimals.
    const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^\\d{${min},${max}}$`))
    const priceText = fc
      .tuple(fc.oneof(fc.constant('0'), fc.tuple(fc.integer({ min: 1, max: 9 }), digits(0, 14)).map(([d, r]) => `${d}${r}`)), fc.option(digits(1, 10)))
      .map(([whole, fraction]) => (fraction === null ? whole : `${whole}.${fraction}`))
    fc.assert(
      fc.property(priceText, (text) => {
        const decoded = decodeTick('s', `{"time":"090000","stock":"s","price":${text}}`)
        assert.ok(decoded.ok, text)
        assert.equal(decoded.tick.price, Number(text))
        if (decoded.tick.token !== undefined) assert.equal(decoded.tick.token, priceToken(decoded.tick.price), text)
      }),
      { numRuns: 20_000 },
    )
    for (const [text, kept] of [['12.5', true], ['12.50', false], ['0.000001', true], ['0.0000001', false], ['123456789012345', true], ['1234567890.123456', false], ['100', true]] as const) {
      const decoded = decodeTick('s', `{"time":"090000","stock":"s","price":${text}}`)
      assert.ok(decoded.ok)
      assert.equal(decoded.tick.token !== undefined, kept, text)
    }
  })

  it('reads the canonical form by position exactly as a full parse reads it (random near-canonical values)', () => {
    const pick = <T>(...values: T[]) => fc.constantFrom(...values)
    const time = fc.oneof(fc.stringMatching(/^\d{6}$/), pick('235959', '240000', '096000', '090060', '09000', '0900000', 'ab0000', ''))
    const name = fc.oneof(
      pick('stock1', 'stock12', 'Stock_A-1', 'user7', 'x', '1abc', 's"t', 's\\"t', 'A\\u0042', 'st\\u006fck1', '', 'a'.repeat(64), 'a'.repeat(65)),
      fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,5}$/),
    )
    const price = fc.oneof(
      fc.stringMatching(/^(0|[1-9]\d{0,16})(\.\d{0,12})?$/),
      pick('null', 'nul', 'nulll', '-1', '1e5', '01', '0.', '.5', '1.5.5', ' 1', '"1"', 'true', ''),
      // A second "stock" after the price: JSON.parse keeps the last one.
      pick('1,"stock":"stock1"', '2,"stock":"B"', 'null,"stock":"user1"'),
    )
    const key = fc.option(fc.oneof(name, pick('stock1')), { nil: undefined })
    fc.assert(
      fc.property(time, name, price, key, (t, n, p, k) => {
        const value = `{"time":"${t}","stock":"${n}","price":${p}}`
        const decoded = decodeTick(k, value)
        // The specification: a full JSON parse, the tick's own checks, then the key.
        let expected: TickResult
        try {
          expected = toTick(JSON.parse(value))
        } catch {
          expected = { ok: false, reason: 'not JSON' }
        }
        if (expected.ok && k && k !== expected.tick.stock) expected = { ok: false, reason: 'key' }
        assert.equal(decoded.ok, expected.ok, `${value} with key ${String(k)}`)
        if (decoded.ok && expected.ok) {
          const { token: _token, source: _source, ...tick } = decoded.tick
          assert.deepEqual(tick, expected.tick, value)
        }
      }),
      { numRuns: 30_000 },
    )
  })

  it('leaves escaped names and repeated fields to the full parse, as JSON reads them', () => {
    const escaped = decodeTick('AB', '{"time":"090000","stock":"A\\u0042","price":1}')
    assert.ok(escaped.ok)
    assert.equal(escaped.tick.stock, 'AB')
    const repeated = decodeTick('B', '{"time":"090000","stock":"A","price":1,"stock":"B"}')
    assert.ok(repeated.ok)
    assert.equal(repeated.tick.stock, 'B')
    assert.match(reasonOf(decodeTick(undefined, '{"time":"090000","stock":"user1","price":01}')), /not JSON/)
  })

  it('still validates values in the canonical form', () => {
    const bad = (value: string) => decodeTick(undefined, value)
    assert.match(reasonOf(bad('{"time":"250000","stock":"stock1","price":1}')), /hhmmss/)
    assert.match(reasonOf(bad('{"time":"090000","stock":"user7","price":1}')), /user key/)
    assert.match(reasonOf(decodeTick('stock2', '{"time":"090000","stock":"stock1","price":1}')), /does not match/)
    assert.match(reasonOf(bad('{"time":"090000","stock":"stock1","price":01}')), /not JSON/)
  })
})
