/** The project's own sample data: reproducible from the generator, readable by the loaders. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { formatPriceLine, PRICE_CSV_HEADER, parsePriceLine } from '../../src/market/price-csv.ts'
import { readRedisFixture } from '../../src/market/redis-fixture.ts'
import { createPrng, generateTicks, SAMPLE_PRICES } from '../../src/market/tick-generator.ts'

describe('fixtures/sample-prices.csv', () => {
  const text = readFileSync(new URL('../../fixtures/sample-prices.csv', import.meta.url), 'utf8')

  it('is exactly what the sample preset generates', () => {
    const lines = [...generateTicks({ ...SAMPLE_PRICES, random: createPrng(SAMPLE_PRICES.seed) })].map(
      formatPriceLine,
    )
    assert.equal(text, `${[PRICE_CSV_HEADER, ...lines].join('\n')}\n`)
  })

  it('looks like the seed data: stock1-3, 09:00:00 to 09:59:47, a few empty prices', () => {
    const rows = text.trimEnd().split('\n').slice(1)
    const parsed = rows.map((line, i) => parsePriceLine(line, i + 2))
    const good = parsed.flatMap((row) => ('tick' in row ? [row.tick] : []))
    assert.equal(good.length, rows.length)
    assert.ok(rows.length >= 450 && rows.length <= 550)
    assert.deepEqual(new Set(good.map((t) => t.stock)), new Set(['stock1', 'stock2', 'stock3']))
    assert.ok(good.every((t) => t.time >= '090000' && t.time <= '095947'))
    const empty = good.filter((t) => t.price === null).length
    assert.ok(empty > 0 && empty < 20, `${empty} empty prices`)
  })
})

describe('fixtures/sample-redis.txt', () => {
  it("holds stock1-3 and a few users in the seed's SET format", async () => {
    const fixture = await readRedisFixture(
      new URL('../../fixtures/sample-redis.txt', import.meta.url).pathname,
    )
    assert.deepEqual(fixture.errors, [])
    const keys = fixture.entries.map((e) => `${e.kind}:${e.key}`)
    assert.deepEqual(keys.slice(0, 3), ['stock:stock1', 'stock:stock2', 'stock:stock3'])
    assert.ok(keys.slice(3).every((k) => k.startsWith('user:user')) && keys.length >= 5)
  })
})
