import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { Redis } from 'ioredis'
import { readRedisFixture } from '../../src/market/redis-fixture.ts'
import { createStockHistoryRepository, type StockHistoryRepository } from '../../src/market/stock-history.repository.ts'
import { closeTestRedis, openTestRedis } from '../helpers/infra.ts'
import { applyToModel, type ModelStock, originalFixtures, readTicks } from '../helpers/market.ts'

let redis: Redis
let history: StockHistoryRepository

before(async () => {
  redis = await openTestRedis()
  history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
})
beforeEach(() => redis.flushdb())
after(() => closeTestRedis(redis))

const get = async (key: string) => JSON.parse((await redis.get(key)) ?? 'null')

describe('the Redis contract', () => {
  test('the original fixture then the original CSV: fixture entries followed by each stock rows in file order', async () => {
    const fixture = await readRedisFixture(originalFixtures.redis)
    assert.deepEqual(fixture.errors, [])
    const model = new Map<string, ModelStock>()
    for (const entry of fixture.entries) {
      if (entry.kind !== 'stock') continue
      await history.seedStock(entry.key, entry.value)
      model.set(entry.key, {
        json: structuredClone(entry.value) as ModelStock['json'],
        changes: 0,
      })
    }
    const ticks = readTicks(originalFixtures.prices)
    assert.equal(ticks.length, 510)
    const result = await history.applyTicks(ticks)
    assert.equal(result.appended, 510)
    applyToModel(model, ticks)
    for (const [stock, expected] of model) {
      const stored = await get(stock)
      assert.deepEqual(stored, expected.json)
      assert.equal(stored.id, Number(stock.slice(5)), 'other fields such as id are kept')
      assert.deepEqual(stored.time.slice(0, 2), ['09:00', '09:01'])
    }
    const stock1 = await get('stock1')
    assert.deepEqual(stock1.time.slice(2, 5), ['090031', '090041', '090134'])
    assert.deepEqual(stock1.price.slice(2, 5), [1041, 1008, 992])
  })

  test('empty prices are stored as "" and prices as JSON numbers', async () => {
    await history.applyTicks([
      { stock: 'stock1', time: '090000', price: 10.5 },
      { stock: 'stock1', time: '090001', price: null },
    ])
    assert.deepEqual(await get('stock1'), { performance: 0, time: ['090000', '090001'], price: [10.5, ''] })
  })

  test('latest prices: the last non-empty one, null without any, undefined for an unknown stock, in the order asked', async () => {
    await history.applyTicks([
      { stock: 'stock1', time: '090000', price: 10.5 },
      { stock: 'stock1', time: '090001', price: 11 },
      { stock: 'stock1', time: '090002', price: null },
      { stock: 'stock2', time: '090000', price: null },
      { stock: 'stock3', time: '090000', price: 7 },
    ])
    assert.deepEqual(await history.readLatestPrices(['stock3', 'nope', 'stock1', 'stock2', 'stock1']), [7, undefined, 11, null, 11])
    assert.deepEqual(await history.readLatestPrices([]), [])
  })

  test('replaying the same ticks changes nothing', async () => {
    const ticks = readTicks(originalFixtures.prices)
    await history.applyTicks(ticks)
    const first = await redis.get('stock2')
    const again = await history.applyTicks(ticks)
    assert.deepEqual(again, { appended: 0, updated: 0, unchanged: 510, replayed: 0, quarantined: 0 })
    assert.equal(await redis.get('stock2'), first)
  })

  test('a tick for a time already present updates its price instead of appending', async () => {
    await history.applyTicks([
      { stock: 'stock1', time: '090000', price: 1 },
      { stock: 'stock1', time: '090001', price: 2 },
    ])
    const result = await history.applyTicks([
      { stock: 'stock1', time: '090000', price: 5 },
      { stock: 'stock1', time: '090002', price: 3 },
      { stock: 'stock1', time: '090002', price: 4 },
    ])
    assert.equal(result.appended, 1)
    assert.equal(result.updated, 2)
    assert.deepEqual(await get('stock1'), { performance: 0, time: ['090000', '090001', '090002'], price: [5, 2, 4] })
  })

  test('the time index is built at the first tick that is not later than the latest, then kept', async () => {
    await history.applyTicks([
      { stock: 'stock1', time: '090000', price: 1 },
      { stock: 'stock1', time: '090001', price: 2 },
    ])
    assert.equal(await redis.exists('bourse:h:stock1:i'), 0, 'in-order ticks need no index')
    await history.applyTicks([{ stock: 'stock1', time: '090000', price: 5 }])
    assert.equal(await redis.hlen('bourse:h:stock1:i'), 2)
    // In order again: appended through the fast path, and indexed, so a later
    // correction of one of them is found.
    await history.applyTicks([
      { stock: 'stock1', time: '090002', price: 3 },
      { stock: 'stock1', time: '090003', price: null },
    ])
    assert.equal(await redis.hlen('bourse:h:stock1:i'), 4)
    const result = await history.applyTicks([
      { stock: 'stock1', time: '090003', price: 4 },
      { stock: 'stock1', time: '090002', price: 3 },
    ])
    assert.deepEqual([result.updated, result.unchanged, result.appended], [1, 1, 0])
    assert.deepEqual(await get('stock1'), {
      performance: 0,
      time: ['090000', '090001', '090002', '090003'],
      price: [5, 2, 3, 4],
    })
  })

  test('a value under a stock key that is not a contract JSON is moved aside, not lost', async () => {
    await redis.set('stock9', 'not json')
    const result = await history.applyTicks([{ stock: 'stock9', time: '100000', price: 1 }])
    assert.equal(result.quarantined, 1)
    assert.equal(await redis.get('bourse:quarantine:stock9'), 'not json')
    assert.deepEqual(await get('stock9'), { performance: 0, time: ['100000'], price: [1] })
  })

  test('a contract JSON written by another tool is adopted with its fields', async () => {
    await redis.set('stock4', JSON.stringify({ id: 4, note: 'x', time: ['0900'], price: [7], performance: 1.5 }))
    await history.applyTicks([{ stock: 'stock4', time: '090100', price: 8 }])
    assert.deepEqual(await get('stock4'), {
      id: 4,
      note: 'x',
      time: ['0900', '090100'],
      price: [7, 8],
      performance: 1.5,
    })
  })
})

describe('exactly once by offsets', () => {
  test('ticks at or below the stored offset of their partition are skipped', async () => {
    const offsets = { group: 'g', topic: 't' }
    const source = (partition: number, offset: number) => ({ partition, offset: BigInt(offset) })
    await history.applyTicks(
      [
        { stock: 'stock1', time: '090000', price: 1, source: source(0, 0) },
        { stock: 'stock1', time: '090001', price: 2, source: source(0, 1) },
        { stock: 'stock2', time: '090000', price: 3, source: source(1, 0) },
      ],
      offsets,
    )
    const replay = await history.applyTicks(
      [
        { stock: 'stock1', time: '090001', price: 2, source: source(0, 1) },
        { stock: 'stock1', time: '090000', price: 9, source: source(0, 2) },
        { stock: 'stock2', time: '090000', price: 99, source: source(1, 0) },
      ],
      offsets,
    )
    assert.equal(replay.replayed, 2)
    assert.equal(replay.updated, 1)
    assert.deepEqual((await get('stock2')).price, [3])
    assert.deepEqual((await get('stock1')).price, [9, 2])
    assert.deepEqual(await history.appliedOffsets('g', 't'), new Map([[0, 2n], [1, 0n]]))
  })

  test('a pipelined batch is refused until the batch before it is applied, then applied after it', async () => {
    const source = (offset: number) => ({ partition: 0, offset: BigInt(offset) })
    const previous = Promise.withResolvers<void>()
    // B is sent first, but says batch A (offsets 0 to 1) was submitted before it.
    const b = history.applyTicks([{ stock: 'stock1', time: '090002', price: 3, source: source(2) }], {
      group: 'g',
      topic: 't',
      submittedBefore: new Map([[0, 1n]]),
      previous: previous.promise,
    })
    const a = await history.applyTicks(
      [
        { stock: 'stock1', time: '090000', price: 1, source: source(0) },
        { stock: 'stock1', time: '090001', price: 2, source: source(1) },
      ],
      { group: 'g', topic: 't' },
    )
    previous.resolve()
    assert.equal(a.appended, 2)
    assert.equal((await b).appended, 1)
    assert.deepEqual((await get('stock1')).time, ['090000', '090001', '090002'])
    assert.deepEqual(await history.appliedOffsets('g', 't'), new Map([[0, 2n]]))
  })

  test('a pipelined batch whose previous batch failed is not applied', async () => {
    const failed = Promise.reject(new Error('previous batch failed'))
    await assert.rejects(
      history.applyTicks([{ stock: 'stock1', time: '090002', price: 3, source: { partition: 0, offset: 2n } }], {
        group: 'g',
        topic: 't',
        submittedBefore: new Map([[0, 1n]]),
        previous: failed,
      }),
      /previous batch failed/,
    )
    assert.equal(await redis.exists('stock1'), 0)
    assert.deepEqual(await history.appliedOffsets('g', 't'), new Map())
  })

  test('offsets of messages without a tick are recorded too', async () => {
    await history.applyTicks([], { group: 'g', topic: 't', consumedOnly: [{ partition: 2, offset: 41n }] })
    assert.deepEqual(await history.appliedOffsets('g', 't'), new Map([[2, 41n]]))
  })
})

describe('materialization', () => {
  test('with an interval, GET lags at most until flush, and the history itself is always current', async () => {
    const lazy = createStockHistoryRepository(redis, { materializeIntervalMs: 3_600_000 })
    await lazy.applyTicks([{ stock: 'stock1', time: '090000', price: 1 }])
    await lazy.applyTicks([{ stock: 'stock1', time: '090001', price: 2 }])
    assert.deepEqual(await lazy.readPrices('stock1'), { prices: [1, 2], version: 2 })
    assert.deepEqual((await get('stock1')).price, [1], 'second batch within the interval is not yet in the JSON')
    assert.equal(await lazy.flush(), 1)
    assert.deepEqual((await get('stock1')).price, [1, 2])
    assert.equal(await lazy.flush(), 0)
  })

  test('seeding replaces a history completely', async () => {
    await history.applyTicks([{ stock: 'stock1', time: '090000', price: 1 }])
    await history.seedStock('stock1', { id: 1, time: ['09:00'], price: [5], performance: 0 })
    assert.deepEqual(await get('stock1'), { id: 1, time: ['09:00'], price: [5], performance: 0 })
    await history.applyTicks([{ stock: 'stock1', time: '090000', price: 1 }])
    assert.deepEqual((await get('stock1')).time, ['09:00', '090000'])
  })
})
