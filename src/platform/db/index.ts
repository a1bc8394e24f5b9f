/**
 * PostgreSQL through Kysely: one pool per process, every connection working in the
 * configured schema (tests give each file its own), and the migrations in this folder.
 */
import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Logger } from '../logger.ts'
import * as accounts from './migrations/0001_accounts.ts'
import * as events from './migrations/0002_events.ts'
import * as finishOrders from './migrations/0003_finish_orders.ts'
import * as callbacksInFinish from './migrations/0004_callbacks_in_finish.ts'
import * as eventErrorsSession from './migrations/0005_event_errors_session.ts'
import type { Database } from './schema.ts'

export type { Database } from './schema.ts'
export type Db = Kysely<Database>

/** Every migration, in order. A new migration is a new file here and a new line below. */
const migrations: Record<string, Migration> = {
  '0001_accounts': accounts,
  '0002_events': events,
  '0003_finish_orders': finishOrders,
  '0004_callbacks_in_finish': callbacksInFinish,
  '0005_event_errors_session': eventErrorsSession,
}

/** Options for {@link createDb}. */
export interface DbOptions {
  /** `postgres://` URL. */
  url: string
  /** Schema the connections work in (search_path). @defaultValue public */
  schema?: string
  /** Largest number of pooled connections. @defaultValue 10 */
  max?: number
  log?: Logger
}

/** Opens a connection pool working in `schema`. Close it with {@link closeDb}. */
export function createDb(options: DbOptions): Db {
  const schema = options.schema ?? 'public'
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    // The schema is validated by the config (identifier characters only).
    options: `-c search_path=${schema}`,
    application_name: 'bourse',
    // Idle connections stay a minute (pg-pool closes them after 10 s): a service quiet
    // between bursts (orders placed, then verified together) would otherwise open new ones,
    // each costing milliseconds, just when the burst comes.
    idleTimeoutMillis: 60_000,
  })
  pool.on('error', (err) => options.log?.warn({ err }, 'postgres idle connection error'))
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
}

/** Closes the pool; safe to call twice. */
export async function closeDb(db: Db): Promise<void> {
  await db.destroy()
}

/**
 * Creates the schema if needed and applies every pending migration. Concurrent callers
 * are serialized by Kysely's migration lock. Resolves to the names applied now.
 */
export async function migrateToLatest(db: Db, schema = 'public'): Promise<string[]> {
  await sql`create schema if not exists ${sql.id(schema)}`.execute(db)
  const provider: MigrationProvider = { getMigrations: async () => migrations }
  const migrator = new Migrator({ db, provider, migrationTableSchema: schema })
  const { error, results } = await migrator.migrateToLatest()
  if (error) throw error
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}

/** The channel name for LISTEN/NOTIFY of `topic` within a schema (schemas do not share channels). */
export function notifyChannel(topic: string, schema = 'public'): string {
  return `bourse_${topic}_${schema}`
}
