/**
 * BTC orders in PostgreSQL: placing one under the cap (one statement), reading and paging.
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import { keysetPage, type Page, type PageRequest, isCursorInstant, isCursorUuid, readCursor } from '../platform/db/keyset.ts'
import type { BtcOrderRow } from './db/tables.ts'

/** An order to place. */
export interface NewBtcOrder {
  id: string
  userId: string
  currency: string
  amount: string
  btcPrice: string
  btcAmount: string
  priceSource: string
  priceFetchedAt: Date
  idempotencyKey: string | null
  requestHash: string | null
}

/** What placing an order did: the order, or the cap refused it (with the BTC still available). */
export type PlaceResult = { order: BtcOrderRow } | { capExceeded: true; available: string }

/** Thrown when the user already has an order under this idempotency key (a concurrent retry). */
export class DuplicateIdempotencyKeyError extends Error {
  override name = 'DuplicateIdempotencyKeyError'
}

const ORDER_COLUMNS = sql.raw(
  'id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, idempotency_key, request_hash, created_at',
)

/**
 * Places an order if the total stays within `cap`, in one statement: the totals row is
 * updated only when `btc_total + btc_amount <= cap` (its row lock makes concurrent orders
 * wait and re-check the new total), and the order is inserted only from that update's row.
 * The order keeps the total it took the cap to (`btc_total_after`). A unique violation of
 * the idempotency key aborts the whole statement, the update too.
 *
 * A refusal reads the total again after the update found no room: totals only grow, so the
 * order crosses the cap at that total too, and the BTC available reported is the room left
 * at a total the orders actually reached.
 */
export async function placeBtcOrder(db: Db, order: NewBtcOrder, cap: string): Promise<PlaceResult> {
  try {
    const { rows } = await sql<BtcOrderRow>`
      with added as (
        update btc_totals set btc_total = btc_total + ${order.btcAmount}::numeric
        where id and btc_total + ${order.btcAmount}::numeric <= ${cap}::numeric
        returning btc_total
      )
      -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
      insert into btc_orders (${ORDER_COLUMNS})
      select ${order.id}::uuid, ${order.userId}, ${order.currency}, ${order.amount}::numeric, ${order.btcPrice}::numeric,
        ${order.btcAmount}::numeric, added.btc_total, ${order.priceSource}, ${order.priceFetchedAt}::timestamptz, ${order.idempotencyKey},
        ${order.requestHash}, date_trunc('milliseconds', now())
      from added
      returning ${ORDER_COLUMNS}
    `.execute(db)
    const row = rows[0]
    if (row) return { order: row }
  } catch (err) {
    const pgError = err as { code?: string; constraint?: string }
    if (pgError.code === '23505' && pgError.constraint === 'btc_orders_user_idempotency_key') throw new DuplicateIdempotencyKeyError()
    throw err
  }
  const total = await db.selectFrom('btc_totals').select('btc_total').executeTakeFirstOrThrow()
  const { rows } = await sql<{ available: string }>`select greatest(${cap}::numeric - ${total.btc_total}::numeric, 0)::numeric(20, 8)::text as available`.execute(db)
  return { capExceeded: true, available: rows[0]?.available ?? '0.00000000' }
}

/** The order with this id, if `owner` (undefined: anyone's) may see it. */
export async function findBtcOrder(db: Db, id: string, owner: string | undefined): Promise<BtcOrderRow | undefined> {
  let query = db.selectFrom('btc_orders').selectAll().where('id', '=', id)
  if (owner !== undefined) query = query.where('user_id', '=', owner)
  return query.executeTakeFirst()
}

/** The user's order under an idempotency key, if any. */
export async function findByIdempotencyKey(db: Db, userId: string, key: string): Promise<BtcOrderRow | undefined> {
  return db.selectFrom('btc_orders').selectAll().where('user_id', '=', userId).where('idempotency_key', '=', key).executeTakeFirst()
}

/** A page of orders newest first (`owner` undefined: everyone's). */
export async function listBtcOrders(db: Db, owner: string | undefined, page: PageRequest): Promise<Page<BtcOrderRow>> {
  const after = readCursor(page.cursor, ['created_at', 'id'], (key) => isCursorInstant(key.created_at) && isCursorUuid(key.id))
  let query = db.selectFrom('btc_orders').selectAll()
  if (owner !== undefined) query = query.where('user_id', '=', owner)
  if (after) query = query.where(sql<boolean>`(created_at, id) < (${after.created_at}::timestamptz, ${after.id}::uuid)`)
  const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()
  return keysetPage(rows, page.limit, (row) => [instantText(row.created_at), row.id])
}

/**
 * A timestamp as the cursor keeps it: exact, since orders are created at whole
 * milliseconds (see {@link placeBtcOrder}), which is what a JS Date holds.
 */
function instantText(date: Date): string {
  return date.toISOString()
}
