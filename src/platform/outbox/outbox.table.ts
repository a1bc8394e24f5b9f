/**
 * The outbox contract as DDL, for a domain's migration: the common columns and the partial
 * due index that `outbox.repository.ts` relies on (its header explains each). The domain
 * adds its own columns (the recipient, the payload, ...) to the same builder.
 *
 * Migrations are never edited once released, and these helpers are part of them: what they
 * create must never change. A change to the contract is a new helper and a new migration.
 */
import { type CreateTableBuilder, sql } from 'kysely'
import type { OutboxDb, OutboxIdType } from './outbox.repository.ts'

/** The column names {@link addOutboxColumns} adds. */
export type OutboxColumn =
  | 'id'
  | 'status'
  | 'attempts'
  | 'next_attempt_at'
  | 'lease_until'
  | 'expires_at'
  | 'last_error'
  | 'last_status'
  | 'created_at'
  | 'delivered_at'

/**
 * Adds the common outbox columns to a `createTable` builder, `id` (of `idType`) being the
 * primary key. Name the same `idType` in the table's `OutboxTable`.
 */
export function addOutboxColumns<TB extends string, C extends string>(
  table: CreateTableBuilder<TB, C>,
  idType: OutboxIdType = 'text',
): CreateTableBuilder<TB, C | OutboxColumn> {
  if (!['text', 'uuid', 'bigint'].includes(idType)) throw new RangeError(`idType must be text, uuid or bigint (got ${idType})`)
  return table
    .addColumn('id', sql.raw(idType), (c) => c.primaryKey())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('pending', 'delivered', 'dead')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('lease_until', 'timestamptz')
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_error', 'text')
    .addColumn('last_status', 'integer')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', 'timestamptz')
}

/**
 * Creates the due index of `table` (`<table>_due`, on `(next_attempt_at) where status =
 * 'pending'`), which every claim and `nextDueAt` read.
 */
export async function createOutboxDueIndex(db: OutboxDb, table: string): Promise<void> {
  const name = `${table.split('.').at(-1) ?? table}_due`
  await sql`create index ${sql.id(name)} on ${sql.table(table)} (next_attempt_at) where status = 'pending'`.execute(db)
}
