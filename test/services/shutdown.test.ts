/**
 * Graceful shutdown of the long-running services, as real processes: SIGTERM stops
 * taking work, finishes or hands back what is in flight, and exits 0.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createStockHistoryRepository, offsetsKey } from '../../src/market/stock-history.repository.ts'
import {
  closeTestRedis,
  createTestTopic,
  openTestRedis,
  runCli,
  startCli,
  testEnv,
  uniqueName,
  waitFor,
} from '../helpers/infra.ts'
import { applyToModel, produceTicks, readStocks, ticksWithCorrections } from '../helpers/market.ts'

let redis: Redis
const cleanups: Array<() => Promise<void>> = []

before(async () => {
  redis = await openTestRedis()
})
beforeEach(() => redis.flushdb())
after(async () => {
  for (const cleanup of cleanups) await cleanup()
  await closeTestRedis(redis)
})

test('price-updater: SIGTERM mid-ingest exits 0 with the JSON flushed; a restart finishes exactly once', async () => {
  const topic = uniqueName('shutdown')
  cleanups.push(await createTestTopic(topic, 3))
  const ticks = ticksWithCorrections(60_000, 10, 3)
  await produceTicks(topic, ticks)
  // Small batches and an early, closely polled signal: the stop surely lands mid-ingest.
  const args = ['price-updater', '--topic', topic, '--group', 'g']
  // A long interval: only the flush at shutdown can make the JSON current.
  const env = testEnv({ MATERIALIZE_INTERVAL_MS: '3600000' })

  const child = startCli([...args, '--batch-size', '100'], env)
  const applied = async () =>
    (await redis.hvals(offsetsKey('g', topic))).reduce((sum, o) => sum + Number(o) + 1, 0)
  await waitFor(async () => (await applied()) >= 1000, { what: 'progress', intervalMs: 5 })
  child.kill('SIGTERM')
  const [code] = (await once(child, 'exit')) as [number | null]
  assert.equal(code, 0)
  const stopped = await applied()
  assert.ok(stopped >= 1000 && stopped < ticks.length, `stopped mid-ingest (${stopped} of ${ticks.length} applied)`)
  assert.equal(await redis.scard('bourse:dirty'), 0, 'every changed stock was flushed at shutdown')
  const history = createStockHistoryRepository(redis)
  for (const stock of await history.listStocks()) {
    const { prices } = await history.readPrices(stock)
    assert.deepEqual((await history.readStock(stock))?.price, prices, `${stock} JSON matches its history`)
  }

  const final = await runCli([...args, '--until-idle'], env)
  assert.equal(final.code, 0, final.stderr)
  const model = applyToModel(new Map(), ticks)
  const stored = await readStocks(redis, model.keys())
  for (const [stock, expected] of model) assert.deepEqual(stored.get(stock), expected.json, stock)
})

test('performance: SIGTERM during a cycle exits 0, stores what ran and releases the rest', async () => {
  const history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
  const stocks = ['s1', 's2', 's3', 's4', 's5', 's6']
  await history.applyTicks(
    stocks.flatMap((stock) => [
      { stock, time: '090000', price: 10 },
      { stock, time: '090001', price: 11 },
    ]),
  )
  const child = startCli(['performance', '--workers', '1', '--cost-ms', '400'], testEnv())
  // Claimed once the first lease shows up.
  await waitFor(async () => (await redis.hget('bourse:h:s1:m', 'lo')) !== null, { what: 'a claim' })
  child.kill('SIGTERM')
  const [code] = (await once(child, 'exit')) as [number | null]
  assert.equal(code, 0)
  const computed: string[] = []
  for (const stock of stocks) {
    if ((await history.readStock(stock))?.performance === 10) computed.push(stock)
  }
  assert.ok(computed.length >= 1 && computed.length < stocks.length, `computed ${computed.join(',')}`)
  for (const stock of stocks) {
    assert.equal(await redis.hget(`bourse:h:${stock}:m`, 'lo'), null, `${stock} is not left leased`)
  }
  const rest = await history.claimChanged('next-instance', 1000, 100)
  assert.deepEqual(rest.map((c) => c.stock).sort(), stocks.filter((s) => !computed.includes(s)))
})
