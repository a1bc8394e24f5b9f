import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import {
  type CycleResult,
  createPerformancePool,
  createPerformanceService,
  type PerformancePoolFactory,
  type PerformanceService,
  type PerformanceServiceDeps,
  type StockComputation,
} from '../../src/market/performance.service.ts'
import {
  createStockHistoryRepository,
  type StockHistoryRepository,
} from '../../src/market/stock-history.repository.ts'
import type { Tick } from '../../src/market/tick.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv, waitFor } from '../helpers/infra.ts'

const log = createLogger({ level: 'warn', pretty: false })

/** Ticks of one stock at 09:00:00, 09:00:01, ... (null: no data reported). */
function series(stock: string, prices: Array<number | null>, from = 0): Tick[] {
  return prices.map((price, i) => ({ time: `0900${String(from + i).padStart(2, '0')}`, stock, price }))
}

/** The largest number of computations running at the same instant. */
function maxOverlap(computed: readonly StockComputation[]): number {
  // At equal instants an end sorts before a start: a worker that finishes one task and
  // starts the next is one computation, not two.
  const events = computed.flatMap((c) => [
    { at: c.startedAt, delta: 1 },
    { at: c.finishedAt, delta: -1 },
  ])
  events.sort((a, b) => a.at - b.at || a.delta - b.delta)
  let running = 0
  let max = 0
  for (const event of events) {
    running += event.delta
    max = Math.max(max, running)
  }
  return max
}

/**
 * The real pool, announcing its first task: by then the prices are read and the
 * computation begins.
 */
function announcingPool(): { dispatched: Promise<string>; pool: PerformancePoolFactory } {
  const dispatched = Promise.withResolvers<string>()
  const pool: PerformancePoolFactory = (options) => {
    const real = createPerformancePool(options)
    return {
      run: (task) => {
        dispatched.resolve(task.stock)
        return real.run(task)
      },
      destroy: () => real.destroy(),
    }
  }
  return { dispatched: dispatched.promise, pool }
}

const stocksOf = (computed: readonly StockComputation[]) => computed.map((c) => c.stock).sort()

describe('performance service', () => {
  let redis: Redis
  let history: StockHistoryRepository
  const services: PerformanceService[] = []

  const open = (options: Partial<PerformanceServiceDeps> = {}) => {
    const service = createPerformanceService({
      history,
      log,
      workers: 2,
      costMs: 0,
      intervalMs: 60_000,
      ...options,
    })
    services.push(service)
    return service
  }
  const performanceOf = async (stock: string) => (await history.readStock(stock))?.performance

  before(async () => {
    redis = await openTestRedis()
    history = createStockHistoryRepository(redis, { materializeIntervalMs: 0 })
  })
  beforeEach(async () => {
    await redis.flushdb()
  })
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.close()))
  })
  after(async () => {
    await closeTestRedis(redis)
  })

  it('computes changed stocks only, and a stock again after it changes', async () => {
    await history.applyTicks([
      ...series('stock1', [100, null, 110]),
      ...series('stock2', [50, 40]),
      ...series('stock3', [null]),
    ])
    const service = open()

    const first = await service.runCycle()
    assert.deepEqual(stocksOf(first.computed), ['stock1', 'stock2', 'stock3'])
    assert.ok(first.computed.every((c) => c.stored))
    const stock1 = await history.readStock('stock1')
    assert.deepEqual(stock1, { performance: 10, time: ['090000', '090001', '090002'], price: [100, '', 110] })
    assert.equal(await performanceOf('stock2'), -20)
    assert.equal(await performanceOf('stock3'), 0)

    const second = await service.runCycle()
    assert.equal(second.claimed, 0)
    assert.deepEqual(second.computed, [])

    await history.applyTicks(series('stock2', [45], 2))
    const third = await service.runCycle()
    assert.deepEqual(stocksOf(third.computed), ['stock2'])
    assert.equal(await performanceOf('stock2'), -10)
    assert.equal(await performanceOf('stock1'), 10)
  })

  it('runs as many computations at once as it has workers', async () => {
    const stocks = ['s1', 's2', 's3', 's4', 's5', 's6']
    await history.applyTicks(stocks.flatMap((s, i) => series(s, [10, 10 + i])))
    const service = open({ workers: 2, costMs: 300 })

    const result = await service.runCycle()
    assert.deepEqual(stocksOf(result.computed), stocks)
    assert.equal(maxOverlap(result.computed), 2)
    for (const [i, stock] of stocks.entries()) assert.equal(await performanceOf(stock), i * 10)
  })

  it('never computes a change twice when two instances run side by side', async () => {
    const stocks = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']
    await history.applyTicks(stocks.flatMap((s) => series(s, [10, 11])))
    // A small claim makes the instances take turns on the stocks instead of one taking all.
    const a = open({ workers: 2, costMs: 100, maxClaim: 2 })
    const b = open({ workers: 2, costMs: 100, maxClaim: 2 })
    assert.notEqual(a.owner, b.owner)
    const drain = async (service: PerformanceService) => {
      const computed: StockComputation[] = []
      for (;;) {
        const result: CycleResult = await service.runCycle()
        if (result.claimed === 0) return computed
        computed.push(...result.computed)
      }
    }

    const [byA, byB] = await Promise.all([drain(a), drain(b)])
    assert.deepEqual(stocksOf([...byA, ...byB]), stocks)
    assert.ok(byA.length > 0 && byB.length > 0, `both instances worked (a: ${byA.length}, b: ${byB.length})`)
    assert.ok([...byA, ...byB].every((c) => c.stored))
    assert.deepEqual(await history.claimChanged('someone-else', 1000, 100), [])
    for (const stock of stocks) assert.equal(await performanceOf(stock), 10)
  })

  it('keeps a tick that arrives during a computation and computes it in the next cycle', async () => {
    await history.applyTicks(series('stock1', [100, 110]))
    const { dispatched, pool } = announcingPool()
    const service = open({ workers: 1, costMs: 400, pool })

    const cycle = service.runCycle()
    assert.equal(await dispatched, 'stock1')
    await history.applyTicks(series('stock1', [121], 2))
    const tickStoredAt = performance.timeOrigin + performance.now()
    const first = await cycle
    const [computation] = first.computed
    assert.ok(computation?.stored)
    assert.ok(tickStoredAt < computation.finishedAt, 'the tick was stored while the computation ran')
    assert.equal(computation.performance, 10, 'the computation used the prices it was given')
    assert.deepEqual(await history.readStock('stock1'), {
      performance: 10,
      time: ['090000', '090001', '090002'],
      price: [100, 110, 121],
    })

    const second = await service.runCycle()
    assert.deepEqual(stocksOf(second.computed), ['stock1'])
    assert.equal(await performanceOf('stock1'), 21)
    assert.equal((await service.runCycle()).claimed, 0)
  })

  it('on close, finishes the running computation and releases the other claims', async () => {
    await history.applyTicks(['s1', 's2', 's3'].flatMap((s) => series(s, [10, 12])))
    const { dispatched, pool } = announcingPool()
    const service = open({ workers: 1, costMs: 300, pool })

    const cycle = service.runCycle()
    assert.equal(await dispatched, 's1')
    await service.close()
    const result = await cycle
    assert.deepEqual(stocksOf(result.computed), ['s1'])
    assert.ok(result.computed[0]?.stored)
    assert.deepEqual(result.abandoned.sort(), ['s2', 's3'])
    assert.equal(await performanceOf('s1'), 20)
    assert.equal(await performanceOf('s2'), 0)
    const reclaimed = await history.claimChanged('someone-else', 1000, 100)
    assert.deepEqual(reclaimed.map((c) => c.stock).sort(), ['s2', 's3'], 'released, so claimable at once')
  })

  it('does not compute again a tick that landed between the claim and the price read', async () => {
    await history.applyTicks(series('stock1', [100, 110]))
    // The real repository, with a tick landing just before the service reads the prices.
    const racing: StockHistoryRepository = {
      ...history,
      readPrices: async (stock) => {
        await history.applyTicks(series('stock1', [121], 2))
        return history.readPrices(stock)
      },
    }
    const service = open({ history: racing, workers: 1 })
    const first = await service.runCycle()
    assert.deepEqual(stocksOf(first.computed), ['stock1'])
    assert.equal(first.computed[0]?.performance, 21, 'the late tick was part of the computation')
    assert.equal((await service.runCycle()).claimed, 0, 'so it is not computed a second time')
  })

  it('runs a cycle at start and then every interval until closed', async () => {
    await history.applyTicks(series('stock1', [100, 110]))
    const cycles: CycleResult[] = []
    const service = open({ intervalMs: 100, onCycle: (r) => cycles.push(r) })
    const controller = new AbortController()
    service.start(controller.signal)

    await waitFor(async () => (await performanceOf('stock1')) === 10, { what: 'first cycle' })
    await history.applyTicks(series('stock1', [99], 2))
    await waitFor(async () => (await performanceOf('stock1')) === -1, { what: 'a later cycle' })
    // The cycle that stored -1 is reported once it has ended, a moment after the store.
    await waitFor(() => cycles.length >= 2, { what: 'the later cycle reported' })

    const closing = service.close()
    assert.equal(service.close(), closing, 'close is idempotent')
    await closing
    const seen = cycles.length
    await assert.rejects(service.runCycle(), /closed/)
    assert.equal(cycles.length, seen)
    controller.abort()
  })

  it('`bourse performance --once` computes the changed stocks and exits 0', async () => {
    await history.applyTicks([...series('stock1', [10, 12.5]), ...series('stock2', [20, null, 15])])

    const { code, stdout, stderr } = await runCli(
      ['performance', '--once', '--workers', '2'],
      testEnv({ PERFORMANCE_COST_MS: '50' }),
    )
    assert.equal(code, 0, stderr)
    assert.match(stdout, /2 changed stocks claimed, 2 stored/)
    assert.equal(await performanceOf('stock1'), 25)
    assert.equal(await performanceOf('stock2'), -25)
  })
})
