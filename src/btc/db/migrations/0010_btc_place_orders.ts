/**
 * Placing a batch of BTC orders under the cap becomes one function in the database,
 * `bourse_place_btc_orders(batch, cap)`, called by one statement per batch (see
 * `../../btc-orders.repository.ts` for the contract).
 *
 * Why a function: the batch's statement was planned again for every batch, and its walk
 * through the orders (a recursive CTE) and its look-ups by (user, key) cost PostgreSQL
 * 40-50 µs of CPU per order; a PL/pgSQL loop keeps its plans, adds numbers in a variable,
 * finds a retry by primary key (an order placed under an idempotency key gets the id the
 * key stands for), and inserts the orders placed in one statement: 25-33 µs per order
 * (bench/btc.bench.ts and docs/decisions.md).
 *
 * The tables are unqualified: `set search_path from current` binds them to the schema the
 * migration runs in, as for `bourse_finish_orders` (migration 0003).
 *
 * `enable_seqscan = off` for the function's statements: a function's plans are generic
 * after a few calls, and one made while the table is young may read it from start to end
 * (PostgreSQL estimates a few rows) for as long as the session lives. Every statement here
 * has an index to use; this keeps it using it however the table grows.
 *
 * Orders placed before this migration under a key have random ids; a retry of one is told
 * by the unique (user, key) constraint, which stays (see the repository).
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function bourse_place_btc_orders(batch jsonb, cap numeric)
    returns table (
      outcome text, available text, id uuid, user_id text, currency char(3), amount numeric, btc_price numeric,
      btc_amount numeric, btc_total_after numeric, price_source text, price_fetched_at timestamptz,
      idempotency_key text, request_hash text, created_at timestamptz
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
      outcomes text[] := '{}';
      availables numeric[] := '{}';
      ids uuid[] := '{}';
      placed bigint[] := '{}';
      totals numeric[] := '{}';
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
          ids := array_append(ids, earlier);
        elsif total + o.bought <= cap then
          total := total + o.bought;
          placed := array_append(placed, o.n);
          totals := array_append(totals, total);
          outcomes := array_append(outcomes, 'placed');
          availables := array_append(availables, null::numeric);
          ids := array_append(ids, o.order_id);
        else
          outcomes := array_append(outcomes, 'refused');
          availables := array_append(availables, greatest(cap - total, 0));
          ids := array_append(ids, null::uuid);
        end if;
      end loop;
      -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
      insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source,
        price_fetched_at, idempotency_key, request_hash, created_at)
      select (e.v->>0)::uuid, e.v->>1, e.v->>2, (e.v->>3)::numeric, (e.v->>4)::numeric, (e.v->>5)::numeric, p.total_after,
        e.v->>6, (e.v->>7)::timestamptz, e.v->>8, e.v->>9, stamp
      from unnest(placed, totals) as p(n, total_after)
      join jsonb_array_elements(batch) with ordinality as e(v, n) on e.n = p.n;
      update btc_totals t set btc_total = total where t.id;
      return query
        select d.outcome, d.available::numeric(20, 8)::text, x.id, x.user_id, x.currency, x.amount, x.btc_price,
          x.btc_amount, x.btc_total_after, x.price_source, x.price_fetched_at, x.idempotency_key, x.request_hash, x.created_at
        from unnest(outcomes, availables, ids) with ordinality as d(outcome, available, order_id, n)
        left join lateral (select * from btc_orders x where x.id = d.order_id offset 0) x on true
        order by d.n;
    end
    $body$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists bourse_place_btc_orders(jsonb, numeric)`.execute(db)
}
