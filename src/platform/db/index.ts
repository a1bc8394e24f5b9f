/**
 * PostgreSQL through Kysely: one pool per process, every connection working in the
 * configured schema (tests give each file its own). The platform knows no table: the
 * caller names its database type (`createDb<Database>`) and hands over its migrations.
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import type { Logger } from '../logger.ts'
import { FatalError } from '../retry.ts'

/** Migrations by name; Kysely applies them in name order and records each name it applied. */
export type Migrations = Record<string, Migration>

/**
 * Merges sets of migrations into one, refusing a name that two sets share (one would
 * silently replace the other). Names sort across sets, so they share one sequence.
 */
export function composeMigrations(...sets: readonly Migrations[]): Migrations {
  const all: Migrations = {}
  for (const set of sets) {
    for (const [name, migration] of Object.entries(set)) {
      if (Object.hasOwn(all, name)) throw new Error(`migration ${name} is defined twice`)
      all[name] = migration
    }
  }
  return all
}

/** Options for {@link createDb}. */
export interface DbOptions {
  /** `postgres://` URL. */
  url: string
  /** Schema the connections work in (search_path). @defaultValue public */
  schema?: string
  /** Largest number of pooled connections. @defaultValue 10 */
  max?: number
  /** Longest wait for a new connection, in ms: a hung server fails the query instead of holding it for ever. @defaultValue 5000 */
  connectTimeoutMs?: number
  /**
   * Longest wait for a query's answer, in ms: past it the query fails ("Query read
   * timeout") instead of holding its caller while the server hangs. For request-serving
   * pools, whose queries are short. @defaultValue unset (wait)
   */
  queryTimeoutMs?: number
  log?: Logger
}

/** Opens a connection pool working in `schema`. Close it with {@link closeDb}. */
export function createDb<DB>(options: DbOptions): Kysely<DB> {
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
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    ...(options.queryTimeoutMs !== undefined && { query_timeout: options.queryTimeoutMs }),
  })
  // pg-pool listens for errors on idle connections only (and re-emits them here, where an
  // unheard 'error' would throw), and a client emits `error` when its connection ends
  // unexpectedly, also while it is checked out: unheard, that was an uncaught exception
  // killing the process when PostgreSQL went away mid-query. Each connection's own listener
  // logs the loss, idle or not; the query fails with the error, and the pool drops the
  // broken connection on release.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', (err) => options.log?.warn({ err }, 'postgres connection lost')))
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  pools.set(db, pool)
  return db
}

/** The pool under each Kysely instance {@link createDb} made, for {@link withConnection}. */
const pools = new WeakMap<object, pg.Pool>()

/**
 * Runs `work` on one connection of `db`'s pool, for what Kysely cannot say (COPY). The
 * connection goes back to the pool afterwards; when `work` throws, it is closed instead,
 * since it may have been left mid-protocol or inside a transaction.
 */
export async function withConnection<DB, T>(db: Kysely<DB>, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const pool = pools.get(db)
  if (!pool) throw new FatalError('withConnection: this Kysely instance was not made by createDb')
  const client = await pool.connect()
  try {
    const result = await work(client)
    client.release()
    return result
  } catch (err) {
    client.release(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}

/**
 * Sends `text` (PostgreSQL's COPY text format: one line per row, tab-separated, `\N` for
 * null; see {@link copyText}) to `copy <table> (<columns>) from stdin` on `client`.
 * Resolves to the number of rows copied.
 */
export async function copyIn(client: pg.PoolClient, statement: string, text: string): Promise<number> {
  const stream = client.query(copyFrom(statement))
  await pipeline(Readable.from([text]), stream)
  return stream.rowCount
}

/** A text value in COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : value
}
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

/** Closes the pool; safe to call twice. */
export async function closeDb<DB>(db: Kysely<DB>): Promise<void> {
  await db.destroy()
}

/**
 * Creates the schema if needed and applies every pending one of `migrations`. Concurrent
 * callers are serialized by Kysely's migration lock. Resolves to the names applied now.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, schema: string, migrations: Migrations): Promise<string[]> {
  await sql`create schema if not exists ${sql.id(schema)}`.execute(db)
  const provider: MigrationProvider = { getMigrations: async () => migrations }
  const migrator = new Migrator({ db, provider, migrationTableSchema: schema })
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest()
    if (!error) return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
    if (attempt >= 10 || !isOtherSchemaDropped(error, schema)) throw error
  }
}

/**
 * Whether `err` is another schema vanishing under the migrator's look at the tables:
 * Kysely lists the tables of every schema and reads each schema by name, so a schema
 * dropped meanwhile (another service's or another test file's) fails the look, before
 * any migration ran or the migration lock was taken. Seen in CI with two test lanes, as
 * the schema missing (3F000) or, when the look was reading a dropped table's columns,
 * as `pg_get_serial_sequence` not finding one (42703, naming another schema's table).
 */
function isOtherSchemaDropped(err: unknown, schema: string): boolean {
  const pgError = err as { code?: unknown; message?: unknown; routine?: unknown }
  if (pgError.code === '42703' && pgError.routine === 'pg_get_serial_sequence') return true
  return pgError.code === '3F000' && typeof pgError.message === 'string' && !pgError.message.includes(`"${schema}"`)
}

/** The channel name for LISTEN/NOTIFY of `topic` within a schema (schemas do not share channels). */
export function notifyChannel(topic: string, schema = 'public'): string {
  return `bourse_${topic}_${schema}`
}
