/**
 * A PostgreSQL schema per test file: created and migrated on open, dropped on close.
 * Services started by a test get it through `DATABASE_SCHEMA`.
 */
import { randomBytes } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import { closeDb, createDb, type Migrations, migrateToLatest } from '../../src/platform/db/index.ts'
import { type Database, migrations } from '../../src/database.ts'
import { testConfig } from './infra.ts'

/** An open test schema holding the tables `DB`. */
export interface TestSchema<DB> {
  db: Kysely<DB>
  schema: string
  /** Environment entries pointing a service at this schema. */
  env: { DATABASE_SCHEMA: string }
  close(): Promise<void>
}

/** An open test schema of the application's tables. */
export type TestDb = TestSchema<Database>

/** Creates a fresh, migrated schema `t_<random>`. */
export async function openTestDb(): Promise<TestDb> {
  return openTestSchema<Database>(migrations)
}

/**
 * Creates a fresh schema `t_<random>` migrated with `migrations` only: a test of platform
 * code makes its own scratch tables there, knowing no domain's.
 */
export async function openTestSchema<DB>(migrations: Migrations): Promise<TestSchema<DB>> {
  const schema = `t_${randomBytes(5).toString('hex')}`
  const config = testConfig({ DATABASE_SCHEMA: schema })
  const db = createDb<DB>({ url: config.DATABASE_URL, schema, max: 5 })
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
