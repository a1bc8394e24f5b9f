/**
 * The trading API booted in-process on the real Redis, Kafka and PostgreSQL, each in
 * the test's own namespace: a migrated schema, the test Redis database and a fresh
 * orders topic. Seeds two users with tokens, an admin token and two priced stocks.
 */
import type { Redis } from 'ioredis'
import { createApiToken } from '../../src/auth/index.ts'
import { createStockHistoryRepository } from '../../src/market/index.ts'
import { type Config, kafkaBrokers } from '../../src/platform/config.ts'
import type { HttpApp } from '../../src/platform/http/app.ts'
import { createProducer, type StringProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { buildApiApp } from '../../src/services/api.ts'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { openTestDb, type TestDb } from './db.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, testRedisUrl, uniqueName } from './infra.ts'

/** A booted API and what it runs on. */
export interface TradingApi {
  app: HttpApp
  config: Config
  testDb: TestDb
  redis: Redis
  producer: StringProducer
  topic: string
  /** Bearer tokens: `user1`, `user2` act for themselves; `admin` for anyone. */
  tokens: { user1: string; user2: string; admin: string }
  /** `Authorization` header for a token. */
  auth(token: string): { authorization: string }
  close(): Promise<void>
}

/** Seeded accounts and prices. */
export const seeded = {
  users: { user1: 100_000, user2: 500 },
  prices: { stock1: 1000, stock2: 12.5 },
} as const

/** Boots the API with extra environment (for example a small RATE_LIMIT_MAX). */
export async function openTradingApi(extra: Record<string, string> = {}, options: { heartbeatMs?: number } = {}): Promise<TradingApi> {
  const testDb = await openTestDb()
  const redis = await openTestRedis()
  const topic = uniqueName('orders')
  const config = testConfig({
    ...testDb.env,
    ORDERS_TOPIC: topic,
    CALLBACK_ALLOWED_NETWORKS: '127.0.0.1',
    RATE_LIMIT_MAX: '100000',
    AUTH_CACHE_MS: '0',
    ...extra,
  })
  // On the broker the API uses: a test may give it one of its own (KAFKA_BROKERS).
  const dropTopic = await createTestTopic(topic, 3, kafkaBrokers(config))
  const log = createLogger({ level: 'silent', pretty: false })
  const producer = createProducer({ brokers: kafkaBrokers(config) })
  const { Redis: RedisClient } = await import('ioredis')
  const subscriber = new RedisClient(testRedisUrl)

  const users = await createAccounts(
    testDb.db,
    Object.entries(seeded.users).map(([id, credit]) => ({ id, credit })),
  )
  for (const user of users) await projectUser(redis, user)
  const history = createStockHistoryRepository(redis)
  let n = 1
  for (const [stock, price] of Object.entries(seeded.prices)) {
    await history.seedStock(stock, { id: n++, price: [price / 2, price, ''], time: ['09:00', '09:01', '09:02'], performance: 0 })
  }
  const tokens = {
    user1: (await createApiToken(testDb.db, { userId: 'user1' })).token,
    user2: (await createApiToken(testDb.db, { userId: 'user2' })).token,
    admin: (await createApiToken(testDb.db, { admin: true })).token,
  }
  const app = await buildApiApp({ config, log, redis, subscriber, db: testDb.db, producer }, options)
  await app.ready()
  return {
    app,
    config,
    testDb,
    redis,
    producer,
    topic,
    tokens,
    auth: (token) => ({ authorization: `Bearer ${token}` }),
    async close() {
      // Each step on its own: a topic that cannot be deleted (a test's broker killed) must
      // not leave the connections open and the test process running.
      const errors: unknown[] = []
      const steps = [
        () => app.close(),
        () => subscriber.disconnect(),
        () => producer.close(),
        () => dropTopic(),
        () => closeTestRedis(redis),
        () => testDb.close(),
      ]
      for (const step of steps) {
        try {
          await step()
        } catch (err) {
          errors.push(err)
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'closing the trading API failed')
    },
  }
}
