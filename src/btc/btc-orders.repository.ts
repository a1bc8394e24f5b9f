/**
 * BTC orders in PostgreSQL: placing them under the cap (a batch per transaction), reading and paging.
 */
import Big from 'big.js'
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

/**
 * What placing an order did: the order placed, the cap refused it (with the BTC still
 * available at that point), or the user already has an order under its idempotency key.
 */
export type PlaceOutcome = { placed: BtcOrderRow } | { capExceeded: true; available: string } | { earlier: BtcOrderRow }

const ORDER_COLUMNS = sql.raw(
  'id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, idempotency_key, request_hash, created_at',
)

/**
 * Places a batch of orders under the cap in one transaction, deciding them in the order
 * given. The totals row is locked first (`for update`), so batches, from this process or
 * another, follow one another; then each order is placed if the total stays within `cap`
 * and refused otherwise, and the total moves on by the orders placed. Each order keeps the
 * total it took the cap to (`btc_total_after`), and a refusal reports the BTC left at its
 * turn: both are states of that one sequence.
 *
 * An order whose user already has an order under its idempotency key (stored before, or
 * placed earlier in this batch) is not placed again: its outcome is that earlier order.
 * Keys are checked under the lock, so no other batch can take one meanwhile.
 *
 * One transaction of four statements per batch instead of one per order: the commit's
 * disk flush and the lock are shared by the whole batch (see ../platform/serial-batcher.ts).
 */
export async function placeBtcOrders(db: Db, orders: readonly NewBtcOrder[], cap: string): Promise<PlaceOutcome[]> {
  return db.transaction().execute(async (trx) => {
    const { rows: locked } = await sql<{ total: string }>`select btc_total::text as total from btc_totals where id for update`.execute(trx)
    if (!locked[0]) throw new Error('the btc_totals row is missing: run the migrations')
    const earlier = new Map<string, BtcOrderRow>()
    const keyed = orders.filter((o) => o.idempotencyKey !== null)
    if (keyed.length > 0) {
      const { rows } = await sql<BtcOrderRow>`
        select ${ORDER_COLUMNS} from btc_orders
        where (user_id, idempotency_key) in (select * from unnest(${keyed.map((o) => o.userId)}::text[], ${keyed.map((o) => o.idempotencyKey)}::text[]))
      `.execute(trx)
      for (const row of rows) earlier.set(keyOf(row.user_id, row.idempotency_key!), row)
    }

    let total = new Big(locked[0].total)
    const limit = new Big(cap)
    /** Per order: the index of the order placed (in `placing`), or its outcome now. */
    const decided: Array<number | PlaceOutcome | { sameAs: number }> = []
    const placing: Array<NewBtcOrder & { totalAfter: string }> = []
    const placedKeys = new Map<string, number>()
    for (const order of orders) {
      const key = order.idempotencyKey === null ? undefined : keyOf(order.userId, order.idempotencyKey)
      const stored = key === undefined ? undefined : earlier.get(key)
      if (stored) {
        decided.push({ earlier: stored })
        continue
      }
      const sameBatch = key === undefined ? undefined : placedKeys.get(key)
      if (sameBatch !== undefined) {
        decided.push({ sameAs: sameBatch })
        continue
      }
      const after = total.plus(order.btcAmount)
      if (after.gt(limit)) {
        const available = limit.minus(total)
        decided.push({ capExceeded: true, available: (available.lt(0) ? new Big(0) : available).toFixed(8) })
        continue
      }
      total = after
      if (key !== undefined) placedKeys.set(key, placing.length)
      decided.push(placing.length)
      placing.push({ ...order, totalAfter: after.toFixed(8) })
    }
    if (placing.length === 0) return decided.map((d) => d as PlaceOutcome)

    const column = <K extends keyof (typeof placing)[number]>(name: K) => placing.map((o) => o[name])
    const { rows } = await sql<BtcOrderRow>`
      with inserted as (
        insert into btc_orders (${ORDER_COLUMNS})
        -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
        select id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at,
          idempotency_key, request_hash, date_trunc('milliseconds', now())
        from unnest(${column('id')}::uuid[], ${column('userId')}::text[], ${column('currency')}::text[], ${column('amount')}::numeric[],
          ${column('btcPrice')}::numeric[], ${column('btcAmount')}::numeric[], ${column('totalAfter')}::numeric[],
          ${column('priceSource')}::text[], ${column('priceFetchedAt')}::timestamptz[], ${column('idempotencyKey')}::text[],
          ${column('requestHash')}::text[])
          as o(id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, idempotency_key, request_hash)
        returning ${ORDER_COLUMNS}
      ), moved as (
        update btc_totals set btc_total = ${total.toFixed(8)}::numeric where id
      )
      select * from inserted
    `.execute(trx)
    const byId = new Map(rows.map((row) => [row.id, row]))
    const rowOf = (index: number) => {
      const row = byId.get(placing[index]!.id)
      if (!row) throw new Error(`order ${placing[index]!.id} was not inserted`)
      return row
    }
    return decided.map((d) => (typeof d === 'number' ? { placed: rowOf(d) } : 'sameAs' in d ? { earlier: rowOf(d.sameAs) } : d))
  })
}

const keyOf = (userId: string, idempotencyKey: string) => JSON.stringify([userId, idempotencyKey])

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
 * milliseconds (see {@link placeBtcOrders}), which is what a JS Date holds.
 */
function instantText(date: Date): string {
  return date.toISOString()
}
