/** Redis connections (ioredis). */
import { Redis } from 'ioredis'
import type { Logger } from './logger.ts'

export type { Redis }

/** Opens a Redis connection; connection errors are logged, never thrown at random. */
export function createRedis(url: string, log: Logger, name = 'bourse'): Redis {
  const redis = new Redis(url, { connectionName: name, maxRetriesPerRequest: 20, enableAutoPipelining: false })
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
