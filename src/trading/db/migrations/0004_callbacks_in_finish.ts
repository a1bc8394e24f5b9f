/**
 * `bourse_finish_orders(items jsonb, notify_channel text, retry_for_ms double precision)`:
 * migration 0003's function, which now also writes the callback of every order it makes
 * final (one `webhook_deliveries` row, as `order_id` allows one) and wakes the callback
 * senders with one NOTIFY on `notify_channel`. The state changes and their callbacks are
 * then one statement, committed together: one round trip under the users' row locks,
 * instead of a transaction of four.
 *
 * The callback's body is `{"type", "timestamp", "data"}`, `data` being the order as the API
 * shows it (`bourse_order_view`, the SQL twin of `orderView` in `src/trading/order-view.ts`:
 * a test holds them equal). Timestamps are ISO 8601 in UTC with milliseconds, truncated,
 * as the API reads them.
 *
 * The function's body repeats 0003's: a migration is never edited once released, so each
 * one states its whole function rather than patching the text of another.
 */
import { type Kysely, sql } from 'kysely'
import { up as createFinishOrdersV1 } from './0003_finish_orders.ts'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function bourse_iso_ms(t timestamptz) returns text
    language sql immutable strict
    as $fn$ select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $fn$
  `.execute(db)
  await sql`
    create function bourse_order_view(o orders) returns json
    language sql stable
    set search_path from current
    as $fn$
      select json_build_object(
        'order_id', o.id,
        'user', o.user_id,
        'stockname', o.stock,
        'side', o.side,
        'quantity', o.quantity,
        'status', o.status,
        'reason', o.reason,
        'price', o.price::float8,
        'amount', o.amount::float8,
        'callback_url', o.callback_url,
        'created_at', bourse_iso_ms(o.created_at),
        'updated_at', bourse_iso_ms(o.updated_at),
        'finished_at', bourse_iso_ms(o.finished_at)
      )
    $fn$
  `.execute(db)
  await sql`drop function bourse_finish_orders(jsonb)`.execute(db)
  await sql`
    create function bourse_finish_orders(items jsonb, notify_channel text, retry_for_ms double precision)
    returns table (item_n integer, item_changed boolean, order_row orders, user_row users)
    language plpgsql
    set search_path from current
    as $fn$
    declare
      it record;
      o orders;
      u users;
      held bigint;
      total numeric;
      why text;
      wake boolean := false;
    begin
      perform 1 from orders
        where id = any(array(select (e ->> 'order_id')::uuid from jsonb_array_elements(items) e))
        order by id
        for no key update;
      -- Each order looked up by its key: the plan never depends on the table's statistics.
      for it in
        select x.n, x.order_id, x.verified, x.price, x.reason
        from jsonb_to_recordset(items) as x(n integer, order_id uuid, verified boolean, price numeric, reason text)
        order by (select owner.user_id from orders as owner where owner.id = x.order_id) nulls last, x.n
      loop
        item_n := it.n;
        item_changed := false;
        user_row := null;
        select * into o from orders where id = it.order_id;
        if not found then
          order_row := null;
          return next;
          continue;
        end if;
        if o.status in ('filled', 'rejected') then
          order_row := o;
          return next;
          continue;
        end if;
        item_changed := true;
        why := null;
        if not it.verified then
          why := it.reason;
        elsif it.price is null then
          why := 'unknown_stock';
        else
          select * into u from users where id = o.user_id for no key update;
          if not found then
            why := 'unknown_user';
          else
            total := it.price * o.quantity;
            if o.side = 'buy' then
              if u.credit < total then
                why := 'insufficient_credit';
              else
                insert into holdings as h (user_id, stock, quantity, cost)
                  values (o.user_id, o.stock, o.quantity, total)
                  on conflict (user_id, stock) do update
                  set quantity = h.quantity + excluded.quantity, cost = h.cost + excluded.cost;
                update users set credit = credit - total, version = version + 1, updated_at = now()
                  where id = o.user_id returning * into u;
              end if;
            else
              select quantity into held from holdings
                where user_id = o.user_id and stock = o.stock for no key update;
              if not found or held < o.quantity then
                why := 'insufficient_holdings';
              else
                -- The shares sold take their average cost with them.
                update holdings
                  set quantity = quantity - o.quantity, cost = round(cost * (quantity - o.quantity) / quantity, 4)
                  where user_id = o.user_id and stock = o.stock;
                update users set credit = credit + total, version = version + 1, updated_at = now()
                  where id = o.user_id returning * into u;
              end if;
            end if;
          end if;
        end if;
        if why is null then
          insert into transactions (order_id, user_id, stock, side, quantity, price, amount)
            values (o.id, o.user_id, o.stock, o.side, o.quantity, it.price, total);
          update orders set status = 'filled', price = it.price, amount = total, updated_at = now(), finished_at = now()
            where id = o.id returning * into o;
          user_row := u;
        else
          update orders set status = 'rejected', reason = why, updated_at = now(), finished_at = now()
            where id = o.id returning * into o;
        end if;
        if o.callback_url is not null then
          -- The webhook-id: msg_ and 32 hex digits.
          insert into webhook_deliveries (id, order_id, user_id, url, event_type, payload, status, expires_at)
            values (
              'msg_' || replace(gen_random_uuid()::text, '-', ''), o.id, o.user_id, o.callback_url, 'order.' || o.status,
              json_build_object('type', 'order.' || o.status, 'timestamp', bourse_iso_ms(now()), 'data', bourse_order_view(o))::text,
              'pending', now() + retry_for_ms * interval '1 millisecond'
            )
            on conflict (order_id) do nothing;
          wake := true;
        end if;
        order_row := o;
        return next;
      end loop;
      if wake then
        perform pg_notify(notify_channel, '');
      end if;
    end
    $fn$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists bourse_finish_orders(jsonb, text, double precision)`.execute(db)
  await sql`drop function if exists bourse_order_view(orders)`.execute(db)
  await sql`drop function if exists bourse_iso_ms(timestamptz)`.execute(db)
  await createFinishOrdersV1(db)
}
