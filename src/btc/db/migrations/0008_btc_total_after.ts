/**
 * Each BTC order keeps the running total it took the cap to (`btc_total_after`: the sum
 * of `btc_amount` over every order up to and including it, in the order the totals row's
 * lock admitted them), so the cap can be audited order by order; and an order buys at
 * least one satoshi (an amount that rounds to 0 BTC is refused before it is stored).
 *
 * Orders stored before this migration get their running total in `created_at, id` order,
 * the best order known for them. Their BTC amounts are not checked again (none is lost).
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table btc_orders add column btc_total_after numeric(20, 8)`.execute(db)
  await sql`
    update btc_orders o set btc_total_after = r.total
    from (select id, sum(btc_amount) over (order by created_at, id) as total from btc_orders) r
    where o.id = r.id
  `.execute(db)
  await sql`alter table btc_orders alter column btc_total_after set not null`.execute(db)
  await sql`alter table btc_orders drop constraint btc_orders_btc_amount_check`.execute(db)
  // Not valid: orders stored before keep their amounts (checked from now on, never deleted).
  await sql`alter table btc_orders add constraint btc_orders_btc_amount_check check (btc_amount > 0) not valid`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table btc_orders drop constraint btc_orders_btc_amount_check`.execute(db)
  await sql`alter table btc_orders add constraint btc_orders_btc_amount_check check (btc_amount >= 0)`.execute(db)
  await sql`alter table btc_orders drop column btc_total_after`.execute(db)
}
