/** Redis connections (ioredis). */
import { Redis } from 'ioredis'
import type { Logger } from './logger.ts'

export type { Redis }

/** Options of {@link createRedis}. */
export interface RedisOptions {
  /**
   * Send the commands issued in one tick in one write: for a client issuing many commands
   * per tick (the verifier's bursts) this saves a syscall per command. A client whose calls
   * are already one per turn (the API) only pays for a pipeline around each. Scripts (`defineCommand`) must then be
   * defined before the first command is sent: a pipeline opened earlier in the same turn
   * lacks a command defined after it. @defaultValue false
   */
  autoPipelining?: boolean
}

/** Opens a Redis connection; connection errors are logged, never thrown at random. */
export function createRedis(url: string, log: Logger, name = 'bourse', options: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: 20,
    enableAutoPipelining: options.autoPipelining ?? false,
  })
  redis.on('error', (err) => log.warn({ err }, 'redis connection error'))
  return redis
}

/** Closes a connection politely, falling back to disconnect. Safe to call twice. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return
  try {
    await redis.quit()
  } catch {
    redis.disconnect()
  }
}
