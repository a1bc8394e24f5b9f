/**
 * `bourse_finish_orders(items jsonb)`: applies verification outcomes to a batch of orders
 * in one statement (see `src/trading/order-execution.ts`, which owns the semantics and
 * builds the callbacks from the rows it returns).
 *
 * `items` is an array of `{ "n": position, "order_id": uuid, "verified": boolean,
 * "price": decimal text, null for an unknown or unpriced stock, "reason": the rejection
 * reason when not verified }`. One row comes back per item: its position, whether the
 * order changed (false when it was already final, or missing: then `order_row` is null),
 * the order row afterwards, and the user row after a fill.
 *
 * Locking, so that concurrent batches (several verifiers) cannot deadlock: every order row
 * of the batch is locked first, in id order; then the items are processed by user id (and
 * batch position within a user), so user rows, and the holdings under them, are locked in
 * user id order too. `for no key update` is enough against other finishers and does not
 * block the foreign-key checks of orders being inserted for the same user meanwhile.
 *
 * The tables are unqualified: `set search_path from current` binds them to the schema the
 * migration runs in (the one the connection works in, like the tables themselves), whatever
 * the caller's search_path.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function bourse_finish_orders(items jsonb)
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
        order_row := o;
        return next;
      end loop;
    end
    $fn$
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists bourse_finish_orders(jsonb)`.execute(db)
}
