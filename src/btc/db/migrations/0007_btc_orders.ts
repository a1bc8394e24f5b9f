/**
 * BTC buy orders and the running total the cap is checked against.
 *
 * Amounts are `numeric`: the fiat amount with 2 decimals, the price as the provider sent
 * it, the BTC amount with 8 (satoshis). `btc_totals` is one row (its key can only be
 * true) holding the sum of `btc_amount` over `btc_orders`: an order adds to it with a
 * conditional update that the row lock serialises, in the statement that inserts the
 * order, so concurrent orders can never take the total past the cap.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table btc_orders (
      id uuid primary key,
      user_id text not null references users (id) on delete cascade,
      currency char(3) not null check (currency in ('EUR', 'GBP', 'USD')),
      amount numeric(14, 2) not null check (amount > 0),
      btc_price numeric not null check (btc_price > 0),
      btc_amount numeric(20, 8) not null check (btc_amount >= 0),
      price_source text not null,
      price_fetched_at timestamptz not null,
      idempotency_key text,
      request_hash text,
      created_at timestamptz not null default now(),
      constraint btc_orders_user_idempotency_key unique (user_id, idempotency_key)
    )
  `.execute(db)
  await sql`create index btc_orders_user_newest on btc_orders (user_id, created_at desc, id desc)`.execute(db)
  await sql`create index btc_orders_newest on btc_orders (created_at desc, id desc)`.execute(db)
  await sql`
    create table btc_totals (
      id boolean primary key default true check (id),
      btc_total numeric(20, 8) not null default 0 check (btc_total >= 0)
    )
  `.execute(db)
  await sql`insert into btc_totals default values`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['btc_totals', 'btc_orders']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
