import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { percentChange } from '../../src/market/performance.metric.ts'

describe('percentChange', () => {
  it('is the percent change from the first to the last price', () => {
    assert.equal(percentChange([100, 105, 110]), 10)
    assert.equal(percentChange([50, 40]), -20)
  })

  it('skips empty entries at either end and in between', () => {
    assert.equal(percentChange(['', 200, '', 150, '']), -25)
  })

  it('rounds to 4 decimals', () => {
    assert.equal(percentChange([3, 4]), 33.3333)
    assert.equal(percentChange([3, 2]), -33.3333)
    assert.equal(percentChange([7, 8]), 14.2857)
  })

  it('is 0 without a change to measure', () => {
    assert.equal(percentChange([]), 0)
    assert.equal(percentChange(['', '']), 0)
    assert.equal(percentChange([42]), 0)
    assert.equal(percentChange(['', 42, '']), 0)
    assert.equal(percentChange([0, 10]), 0)
  })

  it('never returns -0', () => {
    assert.ok(Object.is(percentChange([100_000, 99_999.99999]), 0))
  })
})
