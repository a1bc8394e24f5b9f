/**
 * A PostgreSQL schema per test file: created and migrated on open, dropped on close.
 * Services started by a test get it through `DATABASE_SCHEMA`.
 */
import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { closeDb, createDb, migrateToLatest } from '../../src/platform/db/index.ts'
import { type Database, type Db, migrations } from '../../src/database.ts'
import { testConfig } from './infra.ts'

/** An open test schema. */
export interface TestDb {
  db: Db
  schema: string
  /** Environment entries pointing a service at this schema. */
  env: { DATABASE_SCHEMA: string }
  close(): Promise<void>
}

/** Creates a fresh, migrated schema `t_<random>`. */
export async function openTestDb(): Promise<TestDb> {
  const schema = `t_${randomBytes(5).toString('hex')}`
  const config = testConfig({ DATABASE_SCHEMA: schema })
  const db = createDb<Database>({ url: config.DATABASE_URL, schema, max: 5 })
  await migrateToLatest(db, schema, migrations)
  return {
    db,
    schema,
    env: { DATABASE_SCHEMA: schema },
    async close() {
      try {
        await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db)
      } finally {
        await closeDb(db)
      }
    },
  }
}
