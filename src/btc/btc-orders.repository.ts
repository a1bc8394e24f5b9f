/**
 * BTC orders in PostgreSQL: placing them under the cap (a batch per transaction), reading and paging.
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

/**
 * What placing an order did: the order placed, the cap refused it (with the BTC still
 * available at that point), or the user already has an order under its idempotency key.
 */
export type PlaceOutcome = { placed: BtcOrderRow } | { capExceeded: true; available: string } | { earlier: BtcOrderRow }

const ORDER_COLUMNS = sql.raw(
  'id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at, idempotency_key, request_hash, created_at',
)

/**
 * Places a batch of orders under the cap in one statement (one round trip, one commit),
 * deciding them in the order given. The statement locks the totals row (`for update`), so
 * batches, from this process or another, follow one another; it then walks the orders in
 * order (a recursive CTE), placing each if the total stays within `cap` and refusing it
 * otherwise, inserts the orders placed and moves the total on, all before it commits. Each
 * order keeps the total it took the cap to (`btc_total_after`), and a refusal reports the
 * BTC left at its turn: both are states of that one sequence.
 *
 * An order whose user already has an order under its idempotency key is not placed again:
 * its outcome is that earlier order. A second order of the batch under the same key as an
 * earlier one of the batch waits for the next statement, which sees the first. A key that
 * another batch took after this statement's snapshot (a concurrent retry) fails the
 * unique constraint; the statement then runs again and sees it.
 *
 * Why one statement per batch: every order updates the one totals row, so placing them one
 * transaction each capped placement at the disk's commit rate, and a transaction of
 * several statements per batch spent the API's time on round trips (bench/btc.bench.ts).
 */
export async function placeBtcOrders(db: Db, orders: readonly NewBtcOrder[], cap: string): Promise<PlaceOutcome[]> {
  const outcomes = new Array<PlaceOutcome | undefined>(orders.length)
  let pending = orders.map((order, index) => ({ order, index }))
  while (pending.length > 0) {
    const seen = new Set<string>()
    const now: typeof pending = []
    const later: typeof pending = []
    for (const item of pending) {
      const key = item.order.idempotencyKey === null ? undefined : keyOf(item.order.userId, item.order.idempotencyKey)
      if (key !== undefined && seen.has(key)) later.push(item)
      else {
        if (key !== undefined) seen.add(key)
        now.push(item)
      }
    }
    const decided = await placeOnce(db, now.map((item) => item.order), cap)
    now.forEach((item, i) => (outcomes[item.index] = decided[i]))
    pending = later
  }
  return outcomes as PlaceOutcome[]
}

/** One row of the placing statement's answer: the order placed or found, or the room left. */
type PlacedRow = Partial<BtcOrderRow> & { n: string; outcome: 'placed' | 'earlier' | 'refused'; available: string | null }

/** {@link placeBtcOrders} for orders whose idempotency keys differ; again on a key taken meanwhile. */
async function placeOnce(db: Db, orders: readonly NewBtcOrder[], cap: string, attempt = 1): Promise<PlaceOutcome[]> {
  const column = <K extends keyof NewBtcOrder>(name: K) => orders.map((o) => o[name])
  try {
    const { rows } = await sql<PlacedRow>`
      with recursive
      input as (
        select * from unnest(${column('id')}::uuid[], ${column('userId')}::text[], ${column('currency')}::text[],
          ${column('amount')}::numeric[], ${column('btcPrice')}::numeric[], ${column('btcAmount')}::numeric[],
          ${column('priceSource')}::text[], ${column('priceFetchedAt')}::timestamptz[], ${column('idempotencyKey')}::text[],
          ${column('requestHash')}::text[])
          with ordinality as o(id, user_id, currency, amount, btc_price, btc_amount, price_source, price_fetched_at,
            idempotency_key, request_hash, n)
      ),
      locked as (select btc_total from btc_totals where id for update),
      earlier as (
        select i.n, o.id from input i join btc_orders o on o.user_id = i.user_id and o.idempotency_key = i.idempotency_key
      ),
      walk(n, total, placed, available) as (
        select 0::bigint, (select btc_total from locked)::numeric, false, null::numeric
        union all
        select i.n, case when step.fits then w.total + i.btc_amount else w.total end, step.fits,
          greatest(${cap}::numeric - w.total, 0)
        from walk w
        join input i on i.n = w.n + 1
        cross join lateral (
          select not exists (select from earlier e where e.n = i.n) and w.total + i.btc_amount <= ${cap}::numeric as fits
        ) step
      ),
      inserted as (
        insert into btc_orders (${ORDER_COLUMNS})
        -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
        select i.id, i.user_id, i.currency, i.amount, i.btc_price, i.btc_amount, w.total, i.price_source, i.price_fetched_at,
          i.idempotency_key, i.request_hash, date_trunc('milliseconds', now())
        from walk w join input i using (n)
        where w.placed
        returning ${ORDER_COLUMNS}
      ),
      moved as (
        update btc_totals set btc_total = (select total from walk order by n desc limit 1) where id
      )
      select w.n::text as n,
        case when w.placed then 'placed' when e.id is not null then 'earlier' else 'refused' end as outcome,
        w.available::numeric(20, 8)::text as available,
        coalesce(ins.id, o.id) as id, coalesce(ins.user_id, o.user_id) as user_id, coalesce(ins.currency, o.currency) as currency,
        coalesce(ins.amount, o.amount) as amount, coalesce(ins.btc_price, o.btc_price) as btc_price,
        coalesce(ins.btc_amount, o.btc_amount) as btc_amount, coalesce(ins.btc_total_after, o.btc_total_after) as btc_total_after,
        coalesce(ins.price_source, o.price_source) as price_source, coalesce(ins.price_fetched_at, o.price_fetched_at) as price_fetched_at,
        coalesce(ins.idempotency_key, o.idempotency_key) as idempotency_key, coalesce(ins.request_hash, o.request_hash) as request_hash,
        coalesce(ins.created_at, o.created_at) as created_at
      from walk w
      join input i using (n)
      left join inserted ins on ins.id = i.id
      left join earlier e on e.n = w.n
      left join btc_orders o on o.id = e.id
      where w.n > 0
      order by w.n
    `.execute(db)
    if (rows.length !== orders.length) throw new Error(`placing ${orders.length} orders answered ${rows.length} rows`)
    return rows.map(({ n: _n, outcome, available, ...row }) => {
      if (outcome === 'refused') return { capExceeded: true, available: available! }
      return outcome === 'placed' ? { placed: row as BtcOrderRow } : { earlier: row as BtcOrderRow }
    })
  } catch (err) {
    const pgError = err as { code?: string; constraint?: string }
    // Another batch took one of these keys after this statement's snapshot: look again.
    if (pgError.code === '23505' && pgError.constraint === 'btc_orders_user_idempotency_key' && attempt < 5) {
      return placeOnce(db, orders, cap, attempt + 1)
    }
    throw err
  }
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
