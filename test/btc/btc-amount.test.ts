/**
 * The BTC amount arithmetic: a property test against an independent bigint computation
 * (10,000+ pairs), the rounding rule, and the fiat amount's validation.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { btcAmount, parseFiatAmount, smallestFiatAmount, ZERO_BTC } from '../../src/btc/btc-amount.ts'

/** Decimal text as an integer scaled by 10^scale (the text has at most `scale` decimals). */
function scaled(text: string, scale: number): bigint {
  const [whole = '0', fraction = ''] = text.split('.')
  return BigInt(whole + fraction.padEnd(scale, '0'))
}

/** amount / price to 8 decimals, toward zero, in bigint only: floor(amount * 10^8 / price). */
function expectedBtc(amount: string, price: string): string {
  const scale = 12
  const satoshis = (scaled(amount, scale) * 10n ** 8n) / scaled(price, scale)
  const text = satoshis.toString().padStart(9, '0')
  return `${text.slice(0, -8)}.${text.slice(-8)}`
}

/** A decimal text of `whole` and up to `decimals` decimals. */
const decimalText = (maxWhole: bigint, decimals: number) =>
  fc
    .tuple(fc.bigInt({ min: 0n, max: maxWhole }), fc.integer({ min: 0, max: decimals }), fc.bigInt({ min: 0n, max: 10n ** BigInt(decimals) - 1n }))
    .map(([whole, places, fraction]) => (places === 0 ? whole.toString() : `${whole}.${(fraction % 10n ** BigInt(places)).toString().padStart(places, '0')}`))

describe('btcAmount', () => {
  it('equals an exact bigint division toward zero for 20,000 random pairs', () => {
    const amount = decimalText(999_999_999n, 2).filter((a) => scaled(a, 2) > 0n)
    const price = decimalText(10_000_000n, 8).filter((p) => scaled(p, 8) > 0n)
    fc.assert(
      fc.property(amount, price, (a, p) => {
        assert.equal(btcAmount(a, p), expectedBtc(a, p))
      }),
      { numRuns: 20_000 },
    )
  })

  it('rounds toward zero: never more BTC than paid for, and the remainder is under one satoshi', () => {
    const amount = decimalText(999_999n, 2).filter((a) => scaled(a, 2) > 0n)
    const price = decimalText(200_000n, 2).filter((p) => scaled(p, 2) > 0n)
    fc.assert(
      fc.property(amount, price, (a, p) => {
        const btc = scaled(btcAmount(a, p), 8)
        // btc * price <= amount < (btc + 1 satoshi) * price, all scaled by 10^10.
        const paid = scaled(a, 2) * 10n ** 8n
        assert.ok(btc * scaled(p, 2) <= paid)
        assert.ok((btc + 1n) * scaled(p, 2) > paid)
      }),
      { numRuns: 10_000 },
    )
  })

  it('cuts digits instead of rounding half up', () => {
    assert.equal(btcAmount('2', '3'), '0.66666666')
    assert.equal(btcAmount('100', '61234.50'), '0.00163306')
    assert.equal(btcAmount('1', '1'), '1.00000000')
    assert.equal(btcAmount('0.01', '100000000'), '0.00000000')
  })

  it('divides by the price given each time, whichever price came before', () => {
    for (const [amount, price, btc] of [
      ['100', '50000', '0.00200000'],
      ['100', '40000', '0.00250000'],
      ['100', '50000', '0.00200000'],
      ['100', '50000.0', '0.00200000'],
      ['1', '0.5', '2.00000000'],
    ] as const) {
      assert.equal(btcAmount(amount, price), btc, `${amount} at ${price}`)
    }
    assert.throws(() => btcAmount('1', '0'), RangeError)
    assert.equal(btcAmount('1', '0.5'), '2.00000000', 'a refused price does not replace the one kept')
  })

  it('refuses a price that is not a positive decimal', () => {
    assert.throws(() => btcAmount('1', '0'), RangeError)
    assert.throws(() => btcAmount('1', '-1'), RangeError)
    assert.throws(() => btcAmount('1', '1e3'), RangeError)
  })
})

describe('smallestFiatAmount', () => {
  it('is the least amount of cents buying 1 satoshi, for 10,000 random prices', () => {
    const price = decimalText(10_000_000_000n, 8).filter((p) => scaled(p, 8) > 0n)
    fc.assert(
      fc.property(price, (p) => {
        const smallest = smallestFiatAmount(p)
        assert.match(smallest, /^\d+\.\d{2}$/)
        const cents = scaled(smallest, 2)
        // In bigint: cents * 10^8 (satoshis per BTC) / 100 >= price, and one cent less is not.
        const buysOne = (c: bigint) => c * 10n ** 8n * 10n ** 8n >= scaled(p, 8) * 100n
        assert.ok(cents > 0n && buysOne(cents), `${smallest} buys nothing at ${p}`)
        assert.ok(cents === 1n || !buysOne(cents - 1n), `${smallest} is not the smallest at ${p}`)
        assert.notEqual(btcAmount(smallest, p), ZERO_BTC)
        if (cents > 1n) assert.equal(btcAmount(((cents - 1n) / 100n).toString() + '.' + ((cents - 1n) % 100n).toString().padStart(2, '0'), p), ZERO_BTC)
      }),
      { numRuns: 10_000 },
    )
  })

  it('rounds up to whole cents, however many decimals the price has', () => {
    // Just over 0.02 per satoshi: 0.02 buys nothing, 0.03 buys one.
    assert.equal(smallestFiatAmount('2000000.0000000000004'), '0.03')
    assert.equal(btcAmount('0.02', '2000000.0000000000004'), ZERO_BTC)
    assert.equal(smallestFiatAmount('61234.50'), '0.01')
    assert.equal(smallestFiatAmount('100000000'), '1.00')
    assert.equal(smallestFiatAmount('100000001'), '1.01')
  })
})

describe('parseFiatAmount', () => {
  it('accepts numbers and decimal strings of up to 2 decimals in (0, 1e9)', () => {
    assert.deepEqual(parseFiatAmount('250.5'), { ok: true, value: '250.50' })
    assert.deepEqual(parseFiatAmount(10), { ok: true, value: '10.00' })
    assert.deepEqual(parseFiatAmount('0.01'), { ok: true, value: '0.01' })
    assert.deepEqual(parseFiatAmount('999999999.99'), { ok: true, value: '999999999.99' })
  })

  it('refuses everything else with a reason', () => {
    for (const bad of ['0', '0.00', '1000000000', '1.001', '-1', '1e3', 'abc', '', ' ', null, true, {}, [], Number.NaN, Infinity]) {
      const result = parseFiatAmount(bad)
      assert.equal(result.ok, false, `accepted ${String(bad)}`)
      if (!result.ok) assert.ok(result.message.length > 0)
    }
  })
})
