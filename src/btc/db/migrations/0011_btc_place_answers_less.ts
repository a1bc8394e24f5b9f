/**
 * `bourse_place_btc_orders_v2(batch, cap)`: migration 0010's placing function, which read
 * every order it had just placed back from the table (an index probe and a heap fetch per
 * order) to return its whole row, answering less: for an order placed, only what the
 * caller does not already know, the total the order took the cap to and the batch's
 * creation time (ISO 8601 text, the same for the whole batch). Every other column of a
 * placed order is what the caller sent, as PostgreSQL stores it (the repository sends them
 * in the form PostgreSQL writes them back, and checks so). An earlier order found under an
 * idempotency key is still returned whole, and a refusal still carries the BTC available.
 *
 * A new name, not a new body under the old one: services migrate when they start, so
 * during a rolling restart an API process started before this migration still calls
 * `bourse_place_btc_orders` and reads whole rows from it. Both functions lock the same
 * totals row, so orders placed through either are decided one batch after another. The
 * old function is dropped by a later migration, once no release calls it.
 *
 * Why: in a batch of 50, PostgreSQL spent 28-29 µs of CPU per order with the read-back and
 * 24 µs without (five alternated runs each), and the API no longer parses a 14-column row
 * with two timestamps per order (docs/decisions.md).
 *
 * Otherwise the body is 0010's, but for the insert, which takes the orders placed and their
 * totals from the per-order arrays: a migration is never edited once released, so each one
 * states its whole function.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function bourse_place_btc_orders_v2(batch jsonb, cap numeric)
    returns table (
      outcome text, available text, placed_total_after text, placed_created_at text,
      id uuid, user_id text, currency char(3), amount numeric, btc_price numeric, btc_amount numeric,
      btc_total_after numeric, price_source text, price_fetched_at timestamptz, idempotency_key text,
      request_hash text, created_at timestamptz
    )
    language plpgsql
    set search_path from current
    set enable_seqscan = off
    as $body$
    #variable_conflict use_column
    declare
      total numeric;
      o record;
      earlier uuid;
      stamp timestamptz := date_trunc('milliseconds', now());
      -- The same instant as the API writes it (ISO 8601, UTC, milliseconds), formatted once per batch.
      stamp_text text := to_char(stamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
      outcomes text[] := '{}';
      availables numeric[] := '{}';
      afters numeric[] := '{}';
      ids uuid[] := '{}';
    begin
      -- The lock that serialises every batch, of this process or another. In READ COMMITTED
      -- each statement below sees what the batches before this one committed.
      select t.btc_total into total from btc_totals t where t.id for update;
      for o in
        select e.n, (e.v->>0)::uuid as order_id, (e.v->>5)::numeric as bought, e.v->>8 as key
        from jsonb_array_elements(batch) with ordinality as e(v, n) order by e.n
      loop
        earlier := null;
        if o.key is not null then
          select x.id into earlier from btc_orders x where x.id = o.order_id;
        end if;
        if earlier is not null then
          outcomes := array_append(outcomes, 'earlier');
          availables := array_append(availables, null::numeric);
          afters := array_append(afters, null::numeric);
          ids := array_append(ids, earlier);
        elsif total + o.bought <= cap then
          total := total + o.bought;
          outcomes := array_append(outcomes, 'placed');
          availables := array_append(availables, null::numeric);
          afters := array_append(afters, total);
          ids := array_append(ids, null::uuid);
        else
          outcomes := array_append(outcomes, 'refused');
          availables := array_append(availables, greatest(cap - total, 0));
          afters := array_append(afters, null::numeric);
          ids := array_append(ids, null::uuid);
        end if;
      end loop;
      -- The orders placed (the arrays hold one entry per order, in batch order), with
      -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
      insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source,
        price_fetched_at, idempotency_key, request_hash, created_at)
      select (e.v->>0)::uuid, e.v->>1, e.v->>2, (e.v->>3)::numeric, (e.v->>4)::numeric, (e.v->>5)::numeric, afters[e.n],
        e.v->>6, (e.v->>7)::timestamptz, e.v->>8, e.v->>9, stamp
      from jsonb_array_elements(batch) with ordinality as e(v, n)
      where outcomes[e.n] = 'placed';
      update btc_totals t set btc_total = total where t.id;
      -- Only an earlier order is read from the table (ids holds nothing else).
      return query
        select d.outcome, d.available::numeric(20, 8)::text, d.total_after::numeric(20, 8)::text,
          case when d.outcome = 'placed' then stamp_text end,
          x.id, x.user_id, x.currency, x.amount, x.btc_price, x.btc_amount, x.btc_total_after, x.price_source,
          x.price_fetched_at, x.idempotency_key, x.request_hash, x.created_at
        from unnest(outcomes, availables, afters, ids) with ordinality as d(outcome, available, total_after, order_id, n)
        left join lateral (select * from btc_orders x where x.id = d.order_id offset 0) x on true
        order by d.n;
    end
    $body$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists bourse_place_btc_orders_v2(jsonb, numeric)`.execute(db)
}
