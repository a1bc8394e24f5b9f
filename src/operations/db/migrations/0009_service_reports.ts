/**
 * Service reports: what services (through the platform's service shape) and operators
 * filed about the services, newest first, kept within `REPORTS_MAX_ROWS` and
 * `REPORTS_RETENTION_DAYS`.
 *
 * A report moved from the Redis stream keeps the stream entry's id (`stream_ms`,
 * `stream_seq`): unique, so moving an entry twice (two API instances, or one restarting
 * mid-batch) stores it once, and the highest one is where the move resumes.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table service_reports (
      id bigserial primary key,
      level text not null check (level in ('info', 'warning', 'error')),
      service text not null,
      instance text,
      status text not null,
      data jsonb not null default '{}'::jsonb check (jsonb_typeof(data) = 'object'),
      reported_at timestamptz not null,
      received_at timestamptz not null default now(),
      filed_by text,
      stream_ms bigint,
      stream_seq bigint,
      constraint service_reports_stream_entry unique (stream_ms, stream_seq)
    )
  `.execute(db)
  await sql`create index service_reports_newest on service_reports (reported_at desc, id desc)`.execute(db)
  await sql`create index service_reports_service_newest on service_reports (service, reported_at desc, id desc)`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('service_reports').ifExists().execute()
}
