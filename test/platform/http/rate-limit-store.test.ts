import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyRateLimitOptions, FastifyRateLimitStore } from '@fastify/rate-limit'
import { Redis as RedisClient, type Redis } from 'ioredis'
import { coalescingRedisStore, leaseSize } from '../../../src/platform/http/rate-limit-store.ts'
import { closeTestRedis, openTestRedis } from '../../helpers/infra.ts'

let redis: Redis
before(async () => {
  redis = await openTestRedis()
})
beforeEach(async () => {
  await redis.flushdb()
})
after(async () => {
  await closeTestRedis(redis)
})

const options = {} as FastifyRateLimitOptions
const WINDOW_MS = 60_000

/** How many `command`s the Redis server has run (test files run one at a time: only ours). */
async function calls(command: string): Promise<number> {
  const stats = await redis.info('commandstats')
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
}

/** One hit through the store's callback API, by a caller with `max` hits a window (100: counted hit by hit). */
function hit(store: FastifyRateLimitStore, key: string, windowMs = WINDOW_MS, max = 100): Promise<{ current: number; ttl: number }> {
  return new Promise((resolve, reject) => {
    store.incr(key, (err, result) => (err ? reject(err) : resolve(result!)), windowMs, max)
  })
}

describe('the coalescing Redis rate-limit store', () => {
  test('hits arriving together get the counts 1..N in arrival order, from one Redis call', async () => {
    const Store = coalescingRedisStore(redis, 'test:rl:')
    const store = new Store(options)
    const incrbyBefore = await calls('incrby')
    const results = await Promise.all(Array.from({ length: 25 }, () => hit(store, 'caller')))
    assert.deepEqual(
      results.map((r) => r.current),
      Array.from({ length: 25 }, (_, i) => i + 1),
    )
    for (const { ttl } of results) assert.ok(ttl > WINDOW_MS - 5000 && ttl <= WINDOW_MS, `ttl ${ttl}`)
    assert.equal(await redis.get('test:rl:caller'), '25')
    const pttl = await redis.pttl('test:rl:caller')
    assert.ok(pttl > 0 && pttl <= WINDOW_MS, `PTTL ${pttl}`)
    assert.equal((await calls('incrby')) - incrbyBefore, 1)
  })

  test('callers hit together are counted apart by one script call; later hits continue their counts', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    await hit(store, 'warm-up') // Redis has the script from now on: no NOSCRIPT retry below.
    const scriptsBefore = (await calls('evalsha')) + (await calls('eval'))
    const first = await Promise.all([hit(store, 'a'), hit(store, 'a'), hit(store, 'b')])
    assert.deepEqual(
      first.map((r) => r.current),
      [1, 2, 1],
    )
    assert.equal((await calls('evalsha')) + (await calls('eval')) - scriptsBefore, 1)
    const [a3, b2] = await Promise.all([hit(store, 'a'), hit(store, 'b')])
    assert.equal(a3.current, 3)
    assert.equal(b2.current, 2)
    assert.ok(a3.ttl <= WINDOW_MS && a3.ttl > 0)
  })

  test('a window ends: the counter expires and counting starts again at 1', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    // Two hits in one turn: counted together, well inside the 50 ms window.
    const counts = await Promise.all([hit(store, 'short', 50), hit(store, 'short', 50)])
    assert.deepEqual(counts.map((r) => r.current), [1, 2])
    // Redis expires the counter when the window ends.
    while ((await redis.exists('test:rl:short')) === 1) await new Promise((r) => setTimeout(r, 10))
    assert.equal((await hit(store, 'short', 50)).current, 1)
  })

  test('a counter left without an expiry gets one, so its caller is not refused for ever', async () => {
    await redis.set('test:rl:stuck', '1000')
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    const result = await hit(store, 'stuck')
    assert.equal(result.current, 1001)
    assert.equal(result.ttl, WINDOW_MS)
    assert.ok((await redis.pttl('test:rl:stuck')) > 0)
  })

  test('a route child counts under a key of its own', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    const child = store.child({ routeInfo: { method: 'POST', url: '/x' } } as never)
    await hit(child, 'k')
    assert.equal(await redis.get('test:rl:POST/x-k'), '1')
    assert.equal(await redis.get('test:rl:k'), null)
  })

  test('Redis failing fails every waiting hit with the error (the plugin then skips the limit)', async () => {
    // Nothing listens on port 1: every command fails once the one connection attempt has.
    const broken = new RedisClient('redis://127.0.0.1:1/0', { maxRetriesPerRequest: 0, retryStrategy: () => null })
    broken.on('error', () => {})
    try {
      const store = new (coalescingRedisStore(broken, 'test:rl:'))(options)
      const results = await Promise.allSettled([hit(store, 'x'), hit(store, 'x')])
      assert.deepEqual(
        results.map((r) => r.status),
        ['rejected', 'rejected'],
      )
    } finally {
      broken.disconnect()
    }
  })

  test('a reservation is 1% of the budget, at most 32 counts; a budget under 200 is counted hit by hit', () => {
    assert.deepEqual(
      [undefined, 60, 199, 200, 1000, 3200, 6000, 100_000_000].map(leaseSize),
      [1, 1, 1, 2, 10, 32, 32, 32],
    )
  })

  test('a large budget takes its counts a reservation at a time: one Redis call per 32 hits, in order', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    await hit(store, 'warm-up')
    const scriptsBefore = (await calls('evalsha')) + (await calls('eval'))
    const counts: number[] = []
    for (let i = 0; i < 70; i++) counts.push((await hit(store, 'big', WINDOW_MS, 100_000)).current)
    assert.deepEqual(counts, Array.from({ length: 70 }, (_, i) => i + 1))
    assert.equal((await calls('evalsha')) + (await calls('eval')) - scriptsBefore, 3)
    // Redis holds what the three calls reserved: counts 71 to 96 are this process's, unused so far.
    assert.equal(await redis.get('test:rl:big'), '96')
  })

  test('two reservations made while the first call was under way are both used, in order', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    await hit(store, 'warm-up')
    // Two turns in a row, before the first call answers: two calls, two reservations.
    const first = hit(store, 'two', WINDOW_MS, 100_000)
    await new Promise((resolve) => setImmediate(resolve))
    const second = hit(store, 'two', WINDOW_MS, 100_000)
    assert.deepEqual([(await first).current, (await second).current], [1, 33])
    const counts: number[] = []
    for (let i = 0; i < 62; i++) counts.push((await hit(store, 'two', WINDOW_MS, 100_000)).current)
    assert.deepEqual(counts, [...Array.from({ length: 31 }, (_, i) => i + 2), ...Array.from({ length: 31 }, (_, i) => i + 34)])
    assert.equal(await redis.get('test:rl:two'), '64')
  })

  test('processes sharing a counter never get the same count, nor a count past the budget as allowed', async () => {
    const max = 3200 // reservations of 32
    await redis.set('test:rl:shared', String(max - 100), 'PX', WINDOW_MS)
    const stores = Array.from({ length: 3 }, () => new (coalescingRedisStore(redis, 'test:rl:'))(options))
    const counts: number[] = []
    // Three processes, each with several hits a turn, 150 hits in all: 100 fit.
    for (let turn = 0; turn < 10; turn++) {
      const results = await Promise.all(stores.flatMap((store) => Array.from({ length: 5 }, () => hit(store, 'shared', WINDOW_MS, max))))
      counts.push(...results.map((r) => r.current))
    }
    const allowed = counts.filter((n) => n <= max)
    assert.equal(new Set(allowed).size, allowed.length, 'a count given twice')
    assert.ok(allowed.every((n) => n > max - 100))
    // Reservations never take the counter past the budget: only the hits past it do.
    assert.equal(allowed.length, 100)
    assert.equal(Number(await redis.get('test:rl:shared')), max + 50)
  })

  test('a reservation ends with its window: the next hit counts in the new one', async () => {
    const store = new (coalescingRedisStore(redis, 'test:rl:'))(options)
    assert.equal((await hit(store, 'brief', 200, 100_000)).current, 1)
    assert.equal((await hit(store, 'brief', 200, 100_000)).current, 2)
    while ((await redis.exists('test:rl:brief')) === 1) await new Promise((r) => setTimeout(r, 10))
    assert.equal((await hit(store, 'brief', 200, 100_000)).current, 1)
  })

  test('the window options it does not support are refused when the plugin builds it', () => {
    const Store = coalescingRedisStore(redis, 'test:rl:')
    assert.throws(() => new Store({ continueExceeding: true } as never), /fixed window only/)
    assert.throws(() => new Store({ exponentialBackoff: true } as never), /fixed window only/)
  })
})
