import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyRateLimitOptions, FastifyRateLimitStore } from '@fastify/rate-limit'
import { Redis as RedisClient, type Redis } from 'ioredis'
import { coalescingRedisStore } from '../../../src/platform/http/rate-limit-store.ts'
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

/** One hit through the store's callback API. */
function hit(store: FastifyRateLimitStore, key: string, windowMs = WINDOW_MS): Promise<{ current: number; ttl: number }> {
  return new Promise((resolve, reject) => {
    store.incr(key, (err, result) => (err ? reject(err) : resolve(result!)), windowMs, 100)
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

  test('the window options it does not support are refused when the plugin builds it', () => {
    const Store = coalescingRedisStore(redis, 'test:rl:')
    assert.throws(() => new Store({ continueExceeding: true } as never), /fixed window only/)
    assert.throws(() => new Store({ exponentialBackoff: true } as never), /fixed window only/)
  })
})
