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
  /**
   * For a client serving requests: a command not answered within this many ms fails, and
   * commands waiting for a reconnection fail at the first failed attempt, so a caller can
   * answer 503 at once instead of waiting for Redis to come back (ioredis's defaults keep
   * a command for 20 reconnection attempts, minutes with a dead server). Background work
   * that retries anyway keeps the defaults. @defaultValue unset (wait)
   */
  commandTimeoutMs?: number
}

/** Opens a Redis connection; connection errors are logged, never thrown at random. */
export function createRedis(url: string, log: Logger, name = 'bourse', options: RedisOptions = {}): Redis {
  const failFast = options.commandTimeoutMs !== undefined
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: failFast ? 0 : 20,
    enableAutoPipelining: options.autoPipelining ?? false,
    ...(failFast && {
      commandTimeout: options.commandTimeoutMs,
      // Reconnect at least every second, so the client is back soon after Redis is.
      retryStrategy: (attempt: number) => Math.min(attempt * 50, 1000),
    }),
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
