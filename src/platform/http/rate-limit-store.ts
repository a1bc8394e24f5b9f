/**
 * The Redis store of the API's rate limit (a `store` for `@fastify/rate-limit`): a fixed
 * window per caller, counted in Redis so every API instance shares it. The hits that
 * arrive together (in one turn of the event loop) are counted by one Redis call, whatever
 * their callers: the script adds each counter's number of hits, and each hit gets its own
 * count, in arrival order, exactly as if each had been counted alone. The plugin's own
 * store makes a call per request.
 *
 * A caller with a large budget (200 hits a window or more, see {@link leaseSize}) takes its
 * counts from Redis a few at a time: the call that counts a
 * hit also reserves the next counts of the window for this process, and the hits that
 * follow take them without a Redis call until they run out or the window ends. No count is
 * given twice and none past the budget is given as allowed, whatever the number of
 * processes; what a process reserved and did not use when the window ends is lost, at most
 * 1% of the budget per process and window (twice that when a second call went out while
 * the first was under way). A small budget (the default 60 a minute) is
 * counted hit by hit. Why: at thousands of requests a second the Redis call was a fifth of
 * an order's CPU in the API (bench/btc.bench.ts, docs/decisions.md).
 */
import type { FastifyRateLimitOptions, FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Redis } from '../redis.ts'
import { createTurnBatch } from '../turn-loader.ts'

/**
 * KEYS the counters, ARGV[1] the window in ms, then per counter three numbers: the hits to
 * count, the counts wanted (the hits and any to reserve), and the budget (-1: unknown).
 * Reserved counts never take the counter past the budget: the counts granted are the hits
 * and as many of the wanted as fit. Returns, per counter, its count after the grant, the
 * window's remaining ms and the number granted. A counter without an expiry (its PEXPIRE
 * lost, or set by hand) gets one, or it would refuse its caller for ever.
 */
const COUNT_HITS = `
local out = {}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[3 * i - 1])
  local grant = tonumber(ARGV[3 * i])
  local budget = tonumber(ARGV[3 * i + 1])
  if grant > hits then
    local before = tonumber(redis.call('GET', key) or '0')
    grant = math.max(hits, math.min(grant, budget - before))
  end
  local current = redis.call('INCRBY', key, grant)
  local ttl = -1
  if current > grant then ttl = redis.call('PTTL', key) end
  if ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[3 * i - 2] = current
  out[3 * i - 1] = ttl
  out[3 * i] = grant
end
return out
`

/** Most counts one Redis call reserves for a caller. */
const MAX_LEASE = 32
/** A reservation is at most this share of the caller's budget (1%). */
const LEASE_SHARE = 100
/** A reservation ends this long before Redis ends its window, so no count is used in the next window. */
const LEASE_MARGIN_MS = 50
/** Callers holding reservations past which the ended ones are dropped (a caller that stops calling leaves its own). */
const SWEEP_AT = 10_000

/** The counts to reserve per Redis call for a caller with `max` hits a window (1: none reserved). */
export function leaseSize(max: number | undefined): number {
  if (max === undefined || !Number.isFinite(max)) return 1
  return Math.max(1, Math.min(MAX_LEASE, Math.floor(max / LEASE_SHARE)))
}

type Callback = Parameters<FastifyRateLimitStore['incr']>[1]

type ScriptRedis = Redis & {
  bourseCountHits(...keysThenArgs: Array<string | number>): Promise<number[]>
}

/** A hit waiting for its turn's count. */
interface Hit {
  key: string
  windowMs: number
  /** The caller's budget in the window, if the plugin says. */
  max: number | undefined
  callback: Callback
}

/** Counts reserved for this process: `next` to `last` of the window ending at `endsAt` (ms since the epoch). */
interface Lease {
  next: number
  last: number
  endsAt: number
}

/** Counts the hits of each turn with one script call per window length (in practice one). */
function createCounter(redis: Redis) {
  const r = redis as ScriptRedis
  if (typeof r.bourseCountHits !== 'function') redis.defineCommand('bourseCountHits', { lua: COUNT_HITS })
  // Per counter, its reservations in the order granted (two when a call went out while another was under way).
  const leases = new Map<string, Lease[]>()
  /** Drops the reservations that ended; all of them if that leaves too many (they only save Redis calls). */
  const sweep = (now: number) => {
    for (const [key, held] of leases) if (held.every((lease) => lease.endsAt <= now)) leases.delete(key)
    if (leases.size >= SWEEP_AT) leases.clear()
  }

  const send = (windowMs: number, hits: Hit[]) => {
    const byKey = Map.groupBy(hits, (hit) => hit.key)
    const keys = [...byKey.keys()]
    const args = keys.flatMap((key) => {
      const sameKey = byKey.get(key)!
      const max = sameKey[0]!.max
      const wanted = Math.max(sameKey.length, sameKey.length - 1 + leaseSize(max))
      return [sameKey.length, wanted, max === undefined || wanted === sameKey.length ? -1 : max]
    })
    r.bourseCountHits(keys.length, ...keys, windowMs, ...args).then(
      (flat) => {
        const now = Date.now()
        keys.forEach((key, k) => {
          const sameKey = byKey.get(key)!
          const current = flat[3 * k]!
          const ttl = flat[3 * k + 1]!
          const granted = flat[3 * k + 2]!
          // The first hit to arrive gets the lowest count of the turn; what is left is reserved.
          const first = current - granted + 1
          if (granted > sameKey.length) {
            if (leases.size >= SWEEP_AT) sweep(now)
            const lease = { next: first + sameKey.length, last: current, endsAt: now + ttl - LEASE_MARGIN_MS }
            const held = leases.get(key)
            if (held === undefined) leases.set(key, [lease])
            else held.push(lease)
          }
          sameKey.forEach((hit, i) => hit.callback(null, { current: first + i, ttl }))
        })
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err))
        for (const hit of hits) hit.callback(error)
      },
    )
  }
  const batch = createTurnBatch<Hit>((hits) => {
    for (const [windowMs, sameWindow] of Map.groupBy(hits, (hit) => hit.windowMs)) send(windowMs, sameWindow)
  })
  return (hit: Hit) => {
    const held = leases.get(hit.key)
    if (held !== undefined) {
      const now = Date.now()
      while (held.length > 0) {
        const lease = held[0]!
        if (now < lease.endsAt && lease.next <= lease.last) {
          const current = lease.next++
          if (lease.next > lease.last) held.shift()
          if (held.length === 0) leases.delete(hit.key)
          hit.callback(null, { current, ttl: lease.endsAt + LEASE_MARGIN_MS - now })
          return
        }
        held.shift()
      }
      leases.delete(hit.key)
    }
    batch(hit)
  }
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
      incr(key: string, callback: Callback, timeWindow: number, max?: number) {
        shared({ key: keyPrefix + key, windowMs: timeWindow, max, callback })
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
