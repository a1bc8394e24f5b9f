/**
 * The API booted in-process for The Eye's tests, on the real Redis, Kafka and
 * PostgreSQL, each in the test's own namespace: a migrated schema, the test Redis
 * database and a fresh events topic. Creates an application with its token, a user with
 * a token and an admin token.
 */
import type { Redis } from 'ioredis'
import { createApiToken } from '../../src/auth/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import { type Config, kafkaBrokers } from '../../src/platform/config.ts'
import type { HttpApp } from '../../src/platform/http/app.ts'
import { createAdmin, createProducer, type StringProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { buildApiApp } from '../../src/services/api.ts'
import { openTestDb, type TestDb } from './db.ts'
import { closeTestRedis, openTestRedis, testConfig, testRedisUrl, uniqueName } from './infra.ts'

/** A booted API and what it runs on. */
export interface EventsApi {
  app: HttpApp
  config: Config
  testDb: TestDb
  redis: Redis
  producer: StringProducer
  /** The events topic (EVENTS_TOPIC), created for this API. */
  topic: string
  /** The application the `app` token belongs to. */
  appId: string
  /** Bearer tokens: `app` may send events; `user1` and `admin` are API tokens. */
  tokens: { app: string; user1: string; admin: string }
  /** `Authorization` header for a token. */
  auth(token: string): { authorization: string }
  close(): Promise<void>
}

/** Options of {@link openEventsApi}. */
export interface EventsApiOptions {
  /** Extra environment (for example KAFKA_BROKERS of a broker of the test's own). */
  env?: Record<string, string>
  /** Partitions of the events topic. @defaultValue 3 */
  partitions?: number
}

/**
 * Boots the API; the events topic is created on the brokers of the config (and deleted
 * by `close`). A failed boot closes what it had opened, so the test process can exit.
 */
export async function openEventsApi(options: EventsApiOptions = {}): Promise<EventsApi> {
  // Undone in reverse order by close(), or at once when the boot fails.
  const cleanups: Array<() => Promise<unknown> | void> = []
  const close = async () => {
    const errors: unknown[] = []
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup()
      } catch (err) {
        errors.push(err)
      }
    }
    cleanups.length = 0
    if (errors.length > 0) throw new AggregateError(errors, 'closing the events API failed')
  }
  try {
    const testDb = await openTestDb()
    cleanups.push(() => testDb.close())
    const redis = await openTestRedis()
    cleanups.push(() => closeTestRedis(redis))
    const topic = uniqueName('events')
    const config = testConfig({
      ...testDb.env,
      EVENTS_TOPIC: topic,
      RATE_LIMIT_MAX: '100000',
      // Application tokens have their own limit; tests send thousands of requests.
      EVENTS_RATE_LIMIT_MAX: '100000',
      AUTH_CACHE_MS: '0',
      ...options.env,
    })
    const brokers = kafkaBrokers(config)
    const admin = createAdmin({ brokers })
    cleanups.push(() => admin.close())
    await admin.createTopics({ topics: [topic], partitions: options.partitions ?? 3, replicas: 1 })
    cleanups.push(() => admin.deleteTopics({ topics: [topic] }))
    const log = createLogger({ level: 'silent', pretty: false })
    const producer = createProducer({ brokers })
    cleanups.push(() => producer.close())
    const { Redis: RedisClient } = await import('ioredis')
    const subscriber = new RedisClient(testRedisUrl)
    cleanups.push(() => subscriber.disconnect())

    await testDb.db.insertInto('users').values({ id: 'user1', credit: '0', webhook_secret: 'whsec_dGVzdA==' }).execute()
    const app = await createApp(testDb.db, uniqueName('test-app'))
    const tokens = {
      app: app.token,
      user1: (await createApiToken(testDb.db, { userId: 'user1' })).token,
      admin: (await createApiToken(testDb.db, { admin: true })).token,
    }
    const http = await buildApiApp({ config, log, redis, subscriber, db: testDb.db, producer })
    cleanups.push(() => http.close())
    await http.ready()
    return {
      app: http,
      config,
      testDb,
      redis,
      producer,
      topic,
      appId: app.id,
      tokens,
      auth: (token) => ({ authorization: `Bearer ${token}` }),
      close,
    }
  } catch (err) {
    await close().catch(() => {
      // The boot error says more than a failure to undo it.
    })
    throw err
  }
}

/** A valid event for session `session` (a pageview). */
export function sampleEvent(session = 'e2085be5-9137-4e4e-80b5-f1ffddc25423', extra: Record<string, unknown> = {}) {
  return {
    session_id: session,
    category: 'page interaction',
    name: 'pageview',
    data: { host: 'www.consumeraffairs.com', path: '/' },
    timestamp: '2021-01-01 09:15:27.243860',
    ...extra,
  }
}
