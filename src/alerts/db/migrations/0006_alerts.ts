/**
 * Product alerts: the saved searches, each run of one (what it found), the items found,
 * and the email outbox.
 *
 * Prices are `numeric` without a scale: eBay's decimal strings are stored as sent, never
 * rounded. `max_price` is the user's, at most 2 decimals.
 *
 * Scheduling invariant: `alerts.next_run_at` is the due time of an active alert's next run.
 * The distributor claims due alerts by moving it past the tick in the same statement that
 * records the run (`alert_runs`, unique per alert and due time), so no due time is run
 * twice and none is skipped, whatever number of distributors run at once.
 *
 * `alert_emails` is an outbox (the platform's outbox contract: id, status, attempts,
 * next_attempt_at, lease_until, expires_at, last_error, last_status, created_at,
 * delivered_at, and the partial due index): one row per (alert, due time, kind), written in
 * the transaction that stores the run, delivered by the senders after it commits.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table alerts (
      id bigint generated always as identity primary key,
      user_id text not null references users (id) on delete cascade,
      email text not null,
      phrase text not null,
      phrase_key text not null,
      frequency_minutes integer not null check (frequency_minutes in (2, 10, 30)),
      max_price numeric(14, 2) check (max_price > 0),
      currency char(3) check (currency ~ '^[A-Z]{3}$'),
      status text not null default 'active' check (status in ('active', 'paused')),
      paused_by text check (paused_by in ('user', 'unsubscribe')),
      next_run_at timestamptz not null,
      last_run_at timestamptz,
      last_insight_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint alerts_one_per_search unique (user_id, email, phrase_key, frequency_minutes)
    )
  `.execute(db)
  await sql`create index alerts_due on alerts (next_run_at, id) where status = 'active'`.execute(db)
  await sql`create index alerts_user on alerts (user_id, id desc)`.execute(db)
  await sql`create index alerts_email on alerts (email, id desc)`.execute(db)

  await sql`
    create table alert_runs (
      id bigint generated always as identity primary key,
      alert_id bigint not null references alerts (id) on delete cascade,
      due_at timestamptz not null,
      status text not null default 'queued' check (status in ('queued', 'done', 'failed', 'skipped')),
      enqueued_at timestamptz,
      attempts integer not null default 0,
      item_count integer,
      result_total integer,
      cheapest_total numeric,
      cheapest_currency char(3),
      skipped_items jsonb,
      error text,
      created_at timestamptz not null default now(),
      finished_at timestamptz,
      constraint alert_runs_once unique (alert_id, due_at)
    )
  `.execute(db)
  await sql`create index alert_runs_alert on alert_runs (alert_id, due_at desc)`.execute(db)
  await sql`create index alert_runs_unqueued on alert_runs (created_at) where enqueued_at is null and status = 'queued'`.execute(db)

  await sql`
    create table alert_items (
      run_id bigint not null references alert_runs (id) on delete cascade,
      position smallint not null,
      item_id text not null,
      title text not null,
      price numeric not null,
      currency char(3) not null,
      shipping numeric,
      total numeric not null,
      item_web_url text not null,
      image_url text,
      primary key (run_id, position)
    )
  `.execute(db)

  await sql`
    create table alert_emails (
      id text primary key,
      alert_id bigint not null references alerts (id) on delete cascade,
      run_id bigint references alert_runs (id) on delete cascade,
      due_at timestamptz not null,
      kind text not null check (kind in ('list', 'insight')),
      recipient text not null,
      subject text not null,
      html text not null,
      text text not null,
      headers jsonb not null,
      status text not null default 'pending' check (status in ('pending', 'delivered', 'dead')),
      attempts integer not null default 0,
      next_attempt_at timestamptz not null default now(),
      lease_until timestamptz,
      expires_at timestamptz not null,
      last_error text,
      last_status integer,
      created_at timestamptz not null default now(),
      delivered_at timestamptz,
      constraint alert_emails_once unique (alert_id, due_at, kind)
    )
  `.execute(db)
  await sql`create index alert_emails_due on alert_emails (next_attempt_at) where status = 'pending'`.execute(db)

  // The key signing unsubscribe links: made once per database, shared by every service.
  await sql`
    create table alert_signing_keys (
      name text primary key,
      secret text not null,
      created_at timestamptz not null default now()
    )
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['alert_signing_keys', 'alert_emails', 'alert_items', 'alert_runs', 'alerts']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
