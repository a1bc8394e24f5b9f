/**
 * Heartbeats: every long-running instance writes who it is and how it is doing to Redis
 * every interval, under a key that expires after three intervals. An instance that dies,
 * however it dies, disappears from `bourse status` within that time; one that stops
 * cleanly removes its key at once.
 */
import { hostname } from 'node:os'
import type { Logger } from './logger.ts'
import type { Redis } from './redis.ts'

/** Key prefix of the heartbeats; one key per instance. */
export const heartbeatPrefix = 'bourse:heartbeat:'

/** What one heartbeat says. */
export interface Heartbeat {
  service: string
  instance: string
  pid: number
  host: string
  version: string
  /** ISO 8601. */
  started_at: string
  /** ISO 8601, when this beat was written. */
  last_beat: string
  /** How long the key lives without a new beat, in ms. */
  ttl_ms: number
  /** The service's own status: consumer lag, queue depth, totals. */
  status: Record<string, unknown>
}

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  service: string
  instance: string
  version: string
  /** Time between beats; the key expires after three. */
  intervalMs: number
  /** The service's status at each beat; a failure is logged and the beat sent without it. */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>
}

/** A beating heart. */
export interface HeartbeatHandle {
  /** Writes a beat now (the first is written on start). */
  beat(): Promise<void>
  /** Stops beating and removes the key; idempotent. */
  stop(): Promise<void>
}

/** The Redis key of one instance's heartbeat. */
export function heartbeatKey(service: string, instance: string): string {
  return `${heartbeatPrefix}${service}:${instance}`
}

/** The instance id used when none is given: host and pid, unique on a host. */
export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}`
}

/** Starts beating: one beat now, then every `intervalMs`. */
export async function startHeartbeat(redis: Redis, log: Logger, options: HeartbeatOptions): Promise<HeartbeatHandle> {
  const key = heartbeatKey(options.service, options.instance)
  const ttlMs = options.intervalMs * 3
  const startedAt = new Date().toISOString()
  let failures = 0
  let stopped = false
  /** The beat being written, if any: `stop()` waits for it, so it cannot rewrite the key after the delete. */
  let writing: Promise<void> | undefined
  const write = async () => {
    let status: Record<string, unknown> = {}
    try {
      status = (await options.status?.()) ?? {}
    } catch (err) {
      status = { error: (err as Error).message }
    }
    const heartbeat: Heartbeat = {
      service: options.service,
      instance: options.instance,
      pid: process.pid,
      host: hostname(),
      version: options.version,
      started_at: startedAt,
      last_beat: new Date().toISOString(),
      ttl_ms: ttlMs,
      status,
    }
    if (stopped) return
    await redis.set(key, JSON.stringify(heartbeat, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)), 'PX', ttlMs)
  }
  const beat = (): Promise<void> => {
    // One beat at a time: a slow status (consumer lag asks Kafka) skips the ticks meanwhile.
    writing ??= write().finally(() => {
      writing = undefined
    })
    return writing
  }
  const tick = () => {
    if (writing) return
    beat().then(
      () => {
        if (failures > 0) log.info({ failures }, 'heartbeat written again')
        failures = 0
      },
      (err: unknown) => {
        // Redis down: the instance looks missing, which is what an operator should see.
        if (failures++ % 10 === 0) log.warn({ err, failures }, 'heartbeat failed')
      },
    )
  }
  await beat().catch((err: unknown) => log.warn({ err }, 'first heartbeat failed'))
  const timer = setInterval(tick, options.intervalMs)
  timer.unref()
  let stopping: Promise<void> | undefined
  return {
    beat,
    stop: () =>
      (stopping ??= (async () => {
        clearInterval(timer)
        stopped = true
        await writing?.catch(() => {})
        await redis.del(key).catch((err: unknown) => log.warn({ err }, 'removing heartbeat failed'))
      })()),
  }
}

/** Every live heartbeat, sorted by service and instance. Malformed values are skipped. */
export async function readHeartbeats(redis: Redis): Promise<Heartbeat[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${heartbeatPrefix}*`, 'COUNT', 500)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  if (keys.length === 0) return []
  const values = await redis.mget(...keys)
  const beats: Heartbeat[] = []
  for (const value of values) {
    if (value === null) continue // expired between SCAN and MGET
    try {
      const parsed = JSON.parse(value) as Heartbeat
      if (typeof parsed.service === 'string' && typeof parsed.instance === 'string') beats.push(parsed)
    } catch {
      // Not ours to interpret.
    }
  }
  return beats.sort((a, b) => a.service.localeCompare(b.service) || a.instance.localeCompare(b.instance))
}

/** The live instances and the expected services without one. */
export interface ServiceStatus {
  /** Every live heartbeat, sorted by service and instance. */
  instances: Heartbeat[]
  /** The expected services with no live instance, in the order expected. */
  missing: string[]
}

/** What `bourse status` and `GET /api/status` show: the live instances, and which of `expected` have none. */
export async function readServiceStatus(redis: Redis, expected: readonly string[]): Promise<ServiceStatus> {
  const instances = await readHeartbeats(redis)
  const live = new Set(instances.map((b) => b.service))
  return { instances, missing: expected.filter((name) => !live.has(name)) }
}

/** One consumer group's lag, summed over its live instances. */
export interface GroupLag {
  group: string
  /** The service consuming as the group. */
  service: string
  /** Live instances of the group. */
  instances: number
  /** Instances whose heartbeat carries no lag (not assigned yet, or the broker unreachable). */
  unknown: number
  /** Messages not yet committed, by topic, over the instances that gave their lag. */
  lag: Record<string, number>
}

/**
 * The consumer lag per group, from the heartbeats: a consuming instance's status carries
 * its `group` and the lag of the partitions assigned to it (`lag: { topic: n }`), so the
 * group's lag is their sum, without asking Kafka again.
 */
export function consumerLagByGroup(beats: readonly Heartbeat[]): GroupLag[] {
  const groups = new Map<string, GroupLag>()
  for (const beat of beats) {
    const group = beat.status?.group
    if (typeof group !== 'string') continue
    const key = `${beat.service}\u0000${group}`
    let entry = groups.get(key)
    if (!entry) {
      entry = { group, service: beat.service, instances: 0, unknown: 0, lag: {} }
      groups.set(key, entry)
    }
    entry.instances++
    const lag = beat.status.lag
    if (lag === null || typeof lag !== 'object') {
      entry.unknown++
      continue
    }
    for (const [topic, value] of Object.entries(lag)) {
      const n = Number(value)
      if (Number.isFinite(n)) entry.lag[topic] = (entry.lag[topic] ?? 0) + n
    }
  }
  return [...groups.values()].sort((a, b) => a.group.localeCompare(b.group) || a.service.localeCompare(b.service))
}
