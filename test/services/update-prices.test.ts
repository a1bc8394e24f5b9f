/** `bourse seed` and `bourse update-prices` as real processes against the test Redis. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { readRedisFixture } from '../../src/market/redis-fixture.ts'
import type { Tick } from '../../src/market/tick.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'
import { applyToModel, type ModelStock, originalFixtures, readStocks, readTicks } from '../helpers/market.ts'

/** Every key of the database with its type and full value, for before/after comparisons. */
async function snapshot(redis: Redis): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>()
  for (const key of (await redis.keys('*')).sort()) {
    const type = await redis.type(key)
    let value: unknown
    if (type === 'string') value = await redis.get(key)
    else if (type === 'hash') value = await redis.hgetall(key)
    else if (type === 'set') value = (await redis.smembers(key)).sort()
    else if (type === 'list') value = await redis.lrange(key, 0, -1)
    else if (type === 'zset') value = await redis.zrange(key, '0', '-1', 'WITHSCORES')
    else value = await redis.dump(key)
    out.set(key, { type, value })
  }
  return out
}

/** The model after the original fixture: its stocks, as the contract holds them. */
async function fixtureModel(): Promise<Map<string, ModelStock>> {
  const fixture = await readRedisFixture(originalFixtures.redis)
  const model = new Map<string, ModelStock>()
  for (const entry of fixture.entries) {
    if (entry.kind === 'stock') model.set(entry.key, { json: structuredClone(entry.value), changes: 0 })
  }
  return model
}

describe('bourse update-prices', () => {
  let redis: Redis
  let dir: string
  let testDb: TestDb
  before(async () => {
    redis = await openTestRedis()
    testDb = await openTestDb()
    dir = mkdtempSync(join(tmpdir(), 'bourse-update-prices-'))
  })
  beforeEach(async () => {
    await redis.flushdb()
  })
  after(async () => {
    await closeTestRedis(redis)
    await testDb.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('appends the original CSV after the seeded fixture, and a second run changes nothing', async () => {
    const seeded = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
    assert.equal(seeded.code, 0, seeded.stderr)
    assert.match(seeded.stdout, /loaded 3 stocks and 2 users/)

    const ticks = readTicks(originalFixtures.prices)
    assert.equal(ticks.length, 510)
    const loaded = await runCli(['update-prices', '--csv', originalFixtures.prices, '--batch-size', '97'])
    assert.equal(loaded.code, 0, loaded.stderr)
    assert.equal(loaded.stderr, '')
    assert.match(loaded.stdout, /510 rows read, 510 appended, 0 price updates, 0 bad lines skipped/)

    const model = applyToModel(await fixtureModel(), ticks)
    assert.deepEqual([...model.keys()].sort(), ['stock1', 'stock2', 'stock3'])
    const stocks = await readStocks(redis, model.keys())
    for (const [stock, expected] of model) {
      const actual = stocks.get(stock) as { time: string[] }
      assert.deepEqual(actual, expected.json, stock)
      // The fixture's own entries come first, then the CSV's rows in file order.
      assert.deepEqual(actual.time.slice(0, 2), ['09:00', '09:01'], stock)
      assert.deepEqual(actual.time.slice(2), ticks.filter((t) => t.stock === stock).map((t) => t.time), stock)
    }
    assert.deepEqual(JSON.parse((await redis.get('user1')) ?? 'null'), { id: 1, credit: 150000000 })
    assert.deepEqual(JSON.parse((await redis.get('user2')) ?? 'null'), { id: 2, credit: 6000000000 })

    const before = await snapshot(redis)
    const again = await runCli(['update-prices', '--csv', originalFixtures.prices])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /510 rows read, 0 appended, 0 price updates, 0 bad lines skipped/)
    assert.deepEqual(await snapshot(redis), before)
  })

  it('reports bad lines by number on stderr, skips them and loads the rest', async () => {
    const csv = join(dir, 'bad-rows.csv')
    const lines = [
      'Time,Stock,Price',
      '090000,stock1,10',
      '090001,stock2',
      '090002,stock2,20',
      '090003,stock1,abc',
      '090004,stock1,',
      '090005,stock3,30.5',
      '090000,stock1,11',
    ]
    writeFileSync(csv, `${lines.join('\n')}\n`)
    const result = await runCli(['update-prices', '--csv', csv])
    assert.equal(result.code, 0, result.stderr)
    const reported = result.stderr.trimEnd().split('\n')
    assert.equal(reported.length, 2, result.stderr)
    assert.match(reported[0]!, /line 3: expected 3 columns/)
    assert.match(reported[1]!, /line 5: price "abc" is not a non-negative number/)
    assert.match(result.stdout, /5 rows read, 4 appended, 1 price updates, 2 bad lines skipped/)

    const good: Tick[] = [
      { time: '090000', stock: 'stock1', price: 10 },
      { time: '090002', stock: 'stock2', price: 20 },
      { time: '090004', stock: 'stock1', price: null },
      { time: '090005', stock: 'stock3', price: 30.5 },
      { time: '090000', stock: 'stock1', price: 11 },
    ]
    assert.deepEqual(readTicks(csv), good)
    const model = applyToModel(new Map(), good)
    const stocks = await readStocks(redis, model.keys())
    for (const [stock, expected] of model) assert.deepEqual(stocks.get(stock), expected.json, stock)
    assert.deepEqual(stocks.get('stock1'), { performance: 0, time: ['090000', '090004'], price: [11, ''] })
  })

  it('refuses a CSV without header with exit 1, writing nothing', async () => {
    const csv = join(dir, 'no-header.csv')
    writeFileSync(csv, '090000,stock1,10\n090001,stock1,11\n')
    const result = await runCli(['update-prices', '--csv', csv])
    assert.equal(result.code, 1, result.stderr)
    assert.match(result.stderr, /line 1 must be the header "Time,Stock,Price"/)
    assert.equal(await redis.dbsize(), 0)
  })

  it('refuses to run without --csv (exit 2)', async () => {
    const result = await runCli(['update-prices'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /--csv/)
  })
})

describe('bourse seed', () => {
  let redis: Redis
  let dir: string
  let testDb: TestDb
  before(async () => {
    redis = await openTestRedis()
    testDb = await openTestDb()
    dir = mkdtempSync(join(tmpdir(), 'bourse-seed-'))
  })
  after(async () => {
    await closeTestRedis(redis)
    await testDb.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('writes nothing when a line is malformed, naming the line (exit 1)', async () => {
    const file = join(dir, 'bad.txt')
    writeFileSync(
      file,
      [
        `SET stock1 '{"id": 1, "price": [1000], "time": ["09:00"], "performance": 0}'`,
        `SET user1 '{"id": 1, "credit": 100}'`,
        `SET stock2 '{"id": 2, "price": [1, 2], "time": ["09:00"]}'`,
        `SET user2 '{"id": 2, "credit": 5}'`,
      ].join('\n'),
    )
    assert.equal(await redis.dbsize(), 0)
    const result = await runCli(['seed', file], testEnv(testDb.env))
    assert.equal(result.code, 1, result.stderr)
    assert.match(result.stderr, /nothing loaded/)
    assert.match(result.stderr, /line 3: stock2: time has 1 entries but price has 2/)
    assert.doesNotMatch(result.stderr, /line [124]:/)
    assert.equal(await redis.dbsize(), 0)
    assert.deepEqual(await testDb.db.selectFrom('users').select('id').execute(), [])
    assert.deepEqual(await testDb.db.selectFrom('users').select('id').execute(), [])
  })

  it('creates the accounts of the fixture users in PostgreSQL and projects them to Redis', async () => {
    await redis.flushdb()
    await testDb.db.deleteFrom('users').execute()
    const result = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /2 users \(2 new accounts\)/)
    const users = await testDb.db.selectFrom('users').select(['id', 'contract_id', 'credit']).orderBy('id').execute()
    assert.deepEqual(users, [
      { id: 'user1', contract_id: 1, credit: '150000000.0000' },
      { id: 'user2', contract_id: 2, credit: '6000000000.0000' },
    ])
    assert.deepEqual(JSON.parse((await redis.get('user1'))!), { id: 1, credit: 150000000 })
    assert.deepEqual(JSON.parse((await redis.get('user2'))!), { id: 2, credit: 6000000000 })
    // An account with a trading history keeps its credit when the fixture is loaded again.
    await testDb.db.updateTable('users').set({ credit: '12.5', version: '2' }).where('id', '=', 'user1').execute()
    const again = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual(JSON.parse((await redis.get('user1'))!), { id: 1, credit: 12.5 })
    // It says so, for each such user.
    assert.match(again.stderr, /user1: the account exists, so the fixture's credit 150000000 was not applied; its credit 12\.5000 is kept/)
    assert.match(again.stderr, /user2: the account exists/)

    // --reset-accounts: the fixture's credit wins, and the projection follows.
    const reset = await runCli(['seed', originalFixtures.redis, '--reset-accounts'], testEnv(testDb.env))
    assert.equal(reset.code, 0, reset.stderr)
    assert.match(reset.stdout, /2 users \(0 new accounts, 2 reset to the fixture's credit\)/)
    assert.doesNotMatch(reset.stderr, /was not applied/)
    const user1 = await testDb.db.selectFrom('users').select(['credit', 'version']).where('id', '=', 'user1').executeTakeFirstOrThrow()
    assert.deepEqual(user1, { credit: '150000000.0000', version: '3' })
    assert.deepEqual(JSON.parse((await redis.get('user1'))!), { id: 1, credit: 150000000 })
  })

  it('replaces a stock by the fixture when seeded twice', async () => {
    await redis.flushdb()
    const first = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
    assert.equal(first.code, 0, first.stderr)
    const before = await snapshot(redis)
    const second = await runCli(['seed', originalFixtures.redis], testEnv(testDb.env))
    assert.equal(second.code, 0, second.stderr)
    assert.match(second.stdout, /2 users \(0 new accounts\)/)
    const model = await fixtureModel()
    const stocks = await readStocks(redis, model.keys())
    for (const [stock, expected] of model) assert.deepEqual(stocks.get(stock), expected.json, stock)
    // Only the materialization time and the market generation (raised by every write, so
    // that cached reads are never stale) may differ between the two seeds.
    const strip = (snap: Map<string, unknown>) =>
      new Map(
        [...snap]
          .filter(([key]) => key !== 'bourse:market:gen')
          .map(([key, entry]) => {
            const { type, value } = entry as { type: string; value: Record<string, string> }
            if (type !== 'hash' || !key.endsWith(':m')) return [key, entry]
            const { at: _at, g: _g, ...rest } = value
            return [key, { type, value: rest }]
          }),
      )
    assert.deepEqual(strip(await snapshot(redis)), strip(before))
  })
})
