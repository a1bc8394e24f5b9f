/**
 * `bourse_store_events(event_rows, error_rows)`: a batch of the events worker stored by one
 * call, in one round trip. Before, a batch took three (the transaction opened with the
 * workers' advisory lock, the statement inserting both kinds of rows, the commit) and
 * PostgreSQL sat idle in the transaction while each answer travelled to the worker and the
 * next statement back.
 *
 * The same rules as the worker's statements: the lock every worker of the schema takes
 * (the same key, so a worker of the previous version, still storing with its three round
 * trips during a rolling restart, excludes this one and the other way round), then in one
 * statement the valid events (skipping ids already in `event_errors`) and the errors
 * (skipping ids already in `events`), each `on conflict (id) do nothing`. Called outside a
 * transaction, the call is its own: the lock is released at its commit. In READ COMMITTED
 * the insert, a statement after the lock, takes its snapshot once the lock is held, so it
 * sees every row the lock's earlier holders committed. Answers how many rows each insert added.
 *
 * A new function: nothing of the previous version calls it, so down only drops it.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function bourse_store_events(event_rows jsonb, error_rows jsonb)
    returns table (stored_count bigint, rejected_count bigint)
    language plpgsql
    set search_path from current
    as $body$
    begin
      perform pg_advisory_xact_lock(hashtextextended(current_schema() || '.bourse_events_store', 0));
      return query
        with stored as (
          insert into events (id, app_id, session_id, category, name, data, occurred_at, received_at, validated)
          select r.id, r.app_id, r.session_id, r.category, r.name, r.data, r.occurred_at, r.received_at, r.validated
          from jsonb_to_recordset(event_rows) as r(
            id uuid, app_id uuid, session_id text, category text, name text, data jsonb,
            occurred_at timestamptz, received_at timestamptz, validated boolean)
          where not exists (select 1 from event_errors x where x.id = r.id)
          on conflict (id) do nothing
          returning 1
        ),
        rejected as (
          insert into event_errors (id, app_id, session_id, category, name, raw, reasons, received_at)
          select r.id, r.app_id, r.session_id, r.category, r.name, r.raw, r.reasons, r.received_at
          from jsonb_to_recordset(error_rows) as r(
            id uuid, app_id uuid, session_id text, category text, name text, raw jsonb,
            reasons jsonb, received_at timestamptz)
          where not exists (select 1 from events e where e.id = r.id)
          on conflict (id) do nothing
          returning 1
        )
        select (select count(*) from stored), (select count(*) from rejected);
    end
    $body$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function bourse_store_events(jsonb, jsonb)`.execute(db)
}
