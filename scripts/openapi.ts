/**
 * Writes the API's OpenAPI document without starting a server or reaching a dependency:
 * the app is built on clients that never connect (Redis with lazyConnect, a PostgreSQL
 * pool that connects on its first query, a Kafka producer that connects on its first
 * send), and its document is read with `app.swagger()`.
 *
 *   node scripts/openapi.ts [file]   (default: standard output; `npm run lint:openapi` lints it)
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { closeDb, createDb } from '../src/platform/db/index.ts'
import type { Database } from '../src/database.ts'
import { createProducer } from '../src/platform/kafka/clients.ts'
import { createLogger } from '../src/platform/logger.ts'
import { buildApiApp } from '../src/services/api.ts'

const config = loadConfig()
const log = createLogger({ level: 'silent', pretty: false })
const redis = new Redis(config.REDIS_URL, { lazyConnect: true })
const subscriber = new Redis(config.REDIS_URL, { lazyConnect: true })
const db = createDb<Database>({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA })
const producer = createProducer({ brokers: kafkaBrokers(config) })
try {
  // With a registry, so that GET /metrics is documented as the service serves it.
  const app = await buildApiApp({ config, log, redis, subscriber, db, producer }, { metrics: new Registry() })
  await app.ready()
  const text = `${JSON.stringify(app.swagger(), null, 2)}\n`
  await app.close()
  const file = process.argv[2]
  if (file === undefined) process.stdout.write(text)
  else {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, text)
  }
} finally {
  await producer.close()
  await closeDb(db)
  redis.disconnect()
  subscriber.disconnect()
}
