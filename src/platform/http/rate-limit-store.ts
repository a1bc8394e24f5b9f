/**
 * The Redis store of the API's rate limit (a `store` for `@fastify/rate-limit`): a fixed
 * window per caller, counted in Redis so every API instance shares it. The hits that
 * arrive together (in one turn of the event loop) are counted by one Redis call, whatever
 * their callers: the script adds each counter's number of hits, and each hit gets its own
 * count, in arrival order, exactly as if each had been counted alone. The plugin's own
 * store makes a call per request.
 */
import type { FastifyRateLimitOptions, FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Redis } from '../redis.ts'
import { createTurnBatch } from '../turn-loader.ts'

/**
 * KEYS the counters, ARGV[1] the window in ms, ARGV[i + 1] the number of hits on KEYS[i].
 * Returns, per counter, its count after the hits and the window's remaining ms. A counter
 * without an expiry (its PEXPIRE lost, or set by hand) gets one, or it would refuse its
 * caller for ever.
 */
const COUNT_HITS = `
local out = {}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[i + 1])
  local current = redis.call('INCRBY', key, hits)
  local ttl = -1
  if current > hits then ttl = redis.call('PTTL', key) end
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[2 * i - 1] = current
  out[2 * i] = ttl
end
return out
`

type Callback = Parameters<FastifyRateLimitStore['incr']>[1]

type ScriptRedis = Redis & {
  bourseCountHits(...keysThenArgs: Array<string | number>): Promise<number[]>
}

/** A hit waiting for its turn's count. */
interface Hit {
  key: string
  windowMs: number
  callback: Callback
}

/** Counts the hits of each turn with one script call per window length (in practice one). */
function createCounter(redis: Redis) {
  const r = redis as ScriptRedis
  if (typeof r.bourseCountHits !== 'function') redis.defineCommand('bourseCountHits', { lua: COUNT_HITS })

  const send = (windowMs: number, hits: Hit[]) => {
    const byKey = Map.groupBy(hits, (hit) => hit.key)
    const keys = [...byKey.keys()]
    const counts = keys.map((key) => byKey.get(key)!.length)
    r.bourseCountHits(keys.length, ...keys, windowMs, ...counts).then(
      (flat) => {
        keys.forEach((key, k) => {
          const sameKey = byKey.get(key)!
          const current = flat[2 * k]!
          const ttl = flat[2 * k + 1]!
          // The first hit to arrive gets the lowest count of the turn.
          const first = current - sameKey.length + 1
          sameKey.forEach((hit, i) => hit.callback(null, { current: first + i, ttl }))
        })
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err))
        for (const hit of hits) hit.callback(error)
      },
    )
  }
  return createTurnBatch<Hit>((hits) => {
    for (const [windowMs, sameWindow] of Map.groupBy(hits, (hit) => hit.windowMs)) send(windowMs, sameWindow)
  })
}

type Counter = ReturnType<typeof createCounter>

/** The plugin's settings a store is built with (its types leave out the window options). */
type WindowOptions = FastifyRateLimitOptions & { continueExceeding?: unknown; exponentialBackoff?: unknown }

/**
 * A store class for `@fastify/rate-limit`'s `store` option, counting in `redis` under
 * keys starting with `prefix`. Only the plain fixed window is supported: the plugin's
 * `continueExceeding` and `exponentialBackoff` options are refused when it builds the store.
 */
export function coalescingRedisStore(redis: Redis, prefix: string): FastifyRateLimitStoreCtor {
  const counter = createCounter(redis)
  const make = (options: WindowOptions, keyPrefix: string, shared: Counter): FastifyRateLimitStore => {
    if (options.continueExceeding === true || options.exponentialBackoff === true) {
      throw new Error('the Redis rate-limit store supports a fixed window only (no continueExceeding, no exponentialBackoff)')
    }
    const store = {
      incr(key: string, callback: Callback, timeWindow: number) {
        shared({ key: keyPrefix + key, windowMs: timeWindow, callback })
      },
      child(routeOptions: WindowOptions & { routeInfo?: { method?: unknown; url?: unknown } }) {
        // A route with its own limit counts apart from the rest, as the plugin's own store does.
        const route = `${String(routeOptions.routeInfo?.method)}${String(routeOptions.routeInfo?.url)}-`
        return make(routeOptions, keyPrefix + route, shared)
      },
    }
    return store as FastifyRateLimitStore
  }
  return class {
    constructor(options: WindowOptions) {
      return make(options, prefix, counter)
    }
  } as unknown as FastifyRateLimitStoreCtor
}

/** Takes one hit off a counter that is still there and above 0 (an expired one stays gone). */
const GIVE_BACK_HIT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > 0 then return redis.call('DECR', KEYS[1]) end
return 0
`

type GiveBackRedis = Redis & { bourseGiveBackHit(key: string): Promise<number> }

/**
 * Gives back one hit counted by a {@link coalescingRedisStore} with the same `prefix`
 * (for a request counted against a caller it turned out not to belong to).
 */
export function rateLimitRefund(redis: Redis, prefix: string): (key: string) => Promise<void> {
  const r = redis as GiveBackRedis
  if (typeof r.bourseGiveBackHit !== 'function') redis.defineCommand('bourseGiveBackHit', { numberOfKeys: 1, lua: GIVE_BACK_HIT })
  return async (key) => {
    await r.bourseGiveBackHit(prefix + key)
  }
}
