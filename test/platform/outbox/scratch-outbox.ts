/**
 * Scratch outbox tables for the platform's outbox tests: the common columns (made by the
 * platform's own DDL helpers) plus a payload, in a schema of their own, knowing no domain.
 */
import { randomUUID } from 'node:crypto'
import { type ColumnType, type Generated, type Kysely, sql } from 'kysely'
import { notifyChannel } from '../../../src/platform/db/index.ts'
import { notifyOutbox, type OutboxRow, type OutboxTable } from '../../../src/platform/outbox/outbox.repository.ts'
import { addOutboxColumns, createOutboxDueIndex } from '../../../src/platform/outbox/outbox.table.ts'
import { openTestSchema, type TestSchema } from '../../helpers/db.ts'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>

/** A scratch outbox table as Kysely sees it. */
export interface ScratchOutboxTable {
  id: string
  status: OutboxRow['status']
  attempts: Generated<number>
  next_attempt_at: Timestamp
  lease_until: NullableTimestamp
  expires_at: ColumnType<Date, Date | string, Date | string>
  last_error: string | null
  last_status: number | null
  created_at: Timestamp
  delivered_at: NullableTimestamp
  /** What a domain would add: what to deliver. */
  payload: string
}

/** The scratch tables: one with text ids (the default), one with uuid ids. */
export interface ScratchTables {
  scratch_outbox: ScratchOutboxTable
  scratch_outbox_uuid: ScratchOutboxTable
}

/** A row of a scratch outbox, as claimed. */
export type ScratchRow = OutboxRow & { payload: string }

/** Opens a schema holding both scratch tables, each with its due index. */
export function openScratchOutbox(): Promise<TestSchema<ScratchTables>> {
  return openTestSchema<ScratchTables>({
    '0001_scratch_outbox': {
      async up(db) {
        await addOutboxColumns(db.schema.createTable('scratch_outbox'))
          .addColumn('payload', 'text', (c) => c.notNull())
          .execute()
        await createOutboxDueIndex(db, 'scratch_outbox')
        await addOutboxColumns(db.schema.createTable('scratch_outbox_uuid'), 'uuid')
          .addColumn('payload', 'text', (c) => c.notNull())
          .execute()
        await createOutboxDueIndex(db, 'scratch_outbox_uuid')
      },
    },
  })
}

/** The text-id scratch outbox of `schema`. */
export function scratchOutbox(schema: string): OutboxTable {
  return { table: 'scratch_outbox', channel: notifyChannel('scratch', schema) }
}

/** The uuid-id scratch outbox of `schema`. */
export function scratchUuidOutbox(schema: string): OutboxTable {
  return { table: 'scratch_outbox_uuid', channel: notifyChannel('scratch_uuid', schema), idType: 'uuid' }
}

/** What {@link insertRow} writes. */
export interface RowFixture {
  /** The row's id. @defaultValue a fresh one (`msg_...`, or a UUID for a uuid table) */
  id?: string
  /** @defaultValue a fresh JSON text */
  payload?: string
  /** expires_at = now + this. @defaultValue 60000 */
  retryForMs?: number
  /** @defaultValue pending */
  status?: 'pending' | 'dead'
  /** next_attempt_at = now + this (negative: in the past). @defaultValue 0 */
  dueInMs?: number
  /** Also wake the table's senders, in the same transaction. @defaultValue false */
  notify?: boolean
}

/** Writes one outbox row as a domain would: in a transaction, notifying when asked. */
export async function insertRow(
  db: Kysely<ScratchTables>,
  outbox: OutboxTable,
  fixture: RowFixture = {},
): Promise<{ id: string; payload: string }> {
  const id = fixture.id ?? (outbox.idType === 'uuid' ? randomUUID() : `msg_${randomUUID().replaceAll('-', '')}`)
  const payload = fixture.payload ?? JSON.stringify({ n: randomUUID() })
  const table = outbox.table as keyof ScratchTables
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto(table)
      .values({
        id,
        payload,
        status: fixture.status ?? 'pending',
        next_attempt_at: sql<Date>`now() + ${fixture.dueInMs ?? 0}::double precision * interval '1 millisecond'`,
        expires_at: sql<Date>`now() + ${fixture.retryForMs ?? 60_000}::double precision * interval '1 millisecond'`,
      })
      .execute()
    if (fixture.notify === true) await notifyOutbox(trx, outbox)
  })
  return { id, payload }
}

/** Reads one row of a scratch outbox. */
export function readRow(db: Kysely<ScratchTables>, outbox: OutboxTable, id: string) {
  return db
    .selectFrom(outbox.table as keyof ScratchTables)
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirstOrThrow()
}
