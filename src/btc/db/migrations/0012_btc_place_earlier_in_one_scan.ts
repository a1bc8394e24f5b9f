/**
 * `bourse_place_btc_orders_v2` (migration 0011) with the same arguments, answers and
 * decisions, looking up the batch's keyed orders by one statement before deciding: 0011's
 * body ran a statement per keyed order inside its loop, and PostgreSQL set up and tore down
 * an executor for each. The look-up still follows the totals row's lock, so it sees
 * every batch committed before this one, as the statements per order did.
 *
 * The body is replaced under the same name: a process started before this migration calls
 * it the same way and gets the same answers, so a rolling restart needs no second function.
 * Down puts 0011's body back.
 *
 * Why: PostgreSQL's CPU per order, batches of 75 keyed orders into a table of 150,000,
 * 11 alternated pairs: median 41.1 µs before, 33.6 after, though single runs overlapped
 * (docs/decisions.md).
 *
 * The body is 0011's but for the look-up: a migration is never edited once released, so
 * each one states its whole function.
 */
import { type Kysely, sql } from 'kysely'
import * as answersLess from './0011_btc_place_answers_less.ts'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function bourse_place_btc_orders_v2(batch jsonb, cap numeric)
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
      stamp timestamptz := date_trunc('milliseconds', now());
      -- The same instant as the API writes it (ISO 8601, UTC, milliseconds), formatted once per batch.
      stamp_text text := to_char(stamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
      outcomes text[] := '{}';
      availables numeric[] := '{}';
      afters numeric[] := '{}';
      ids uuid[] := '{}';
      -- The keyed orders of the batch placed before (by an earlier batch: keys within a batch differ).
      earliers uuid[];
    begin
      -- The lock that serialises every batch, of this process or another. In READ COMMITTED
      -- each statement below sees what the batches before this one committed.
      select t.btc_total into total from btc_totals t where t.id for update;
      -- Every keyed order looked up by one statement: one index scan for the batch, where a
      -- statement per order set up an executor per order.
      select array(
        select x.id from btc_orders x
        where x.id = any (array(select (e.v->>0)::uuid from jsonb_array_elements(batch) as e(v) where e.v->>8 is not null))
      ) into earliers;
      for o in
        select e.n, (e.v->>0)::uuid as order_id, (e.v->>5)::numeric as bought, e.v->>8 as key
        from jsonb_array_elements(batch) with ordinality as e(v, n) order by e.n
      loop
        if o.key is not null and o.order_id = any (earliers) then
          outcomes := array_append(outcomes, 'earlier');
          availables := array_append(availables, null::numeric);
          afters := array_append(afters, null::numeric);
          ids := array_append(ids, o.order_id);
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
  await sql`drop function bourse_place_btc_orders_v2(jsonb, numeric)`.execute(db)
  await answersLess.up(db)
}
