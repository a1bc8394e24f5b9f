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

/**
 * One row of the placing statement's answer: the outcome, the room left at a refusal, what
 * the database made of a placed order (its numbers as stored, its running total, its
 * time) or of the earlier order under the key, and the rest of an earlier order (null for
 * a placed one: the caller has it).
 */
type PlacedRow = {
  outcome: 'placed' | 'earlier' | 'refused'
  available: string | null
  amount: string | null
  btc_price: string | null
  btc_amount: string | null
  btc_total_after: string | null
  created_at: Date | null
} & { [K in 'id' | 'user_id' | 'currency' | 'price_source' | 'price_fetched_at' | 'idempotency_key' | 'request_hash']: BtcOrderRow[K] | null }

/** {@link placeBtcOrders} for orders whose idempotency keys differ; again on a key taken meanwhile. */
async function placeOnce(db: Db, orders: readonly NewBtcOrder[], cap: string, attempt = 1): Promise<PlaceOutcome[]> {
  // The batch as one JSON parameter: one text for the driver to send and PostgreSQL to
  // read, where an array per column made the driver escape every value.
  const batch = JSON.stringify(
    orders.map((o) => [o.id, o.userId, o.currency, o.amount, o.btcPrice, o.btcAmount, o.priceSource, o.priceFetchedAt, o.idempotencyKey, o.requestHash]),
  )
  try {
    const { rows } = await sql<PlacedRow>`
      with recursive
      input as (
        select (o.n)::bigint as n, (o.v->>0)::uuid as id, o.v->>1 as user_id, o.v->>2 as currency, (o.v->>3)::numeric as amount,
          (o.v->>4)::numeric as btc_price, (o.v->>5)::numeric as btc_amount, o.v->>6 as price_source,
          (o.v->>7)::timestamptz as price_fetched_at, o.v->>8 as idempotency_key, o.v->>9 as request_hash
        from jsonb_array_elements(${batch}::jsonb) with ordinality as o(v, n)
      ),
      amounts as (select array_agg(btc_amount order by n) as a from input),
      locked as (select btc_total from btc_totals where id for update),
      -- A lookup per order in the unique index: a join could scan the table (its statistics
      -- lag while it grows), which costs the whole table per batch.
      earlier as (
        select n, id from (
          select i.n, (select o.id from btc_orders o where o.user_id = i.user_id and o.idempotency_key = i.idempotency_key) as id
          from input i where i.idempotency_key is not null
        ) found where id is not null
      ),
      -- Each step reads its order's amount from the array by position: a join with input
      -- would scan all of it at every step (quadratic in the batch's size).
      walk(n, total, placed, available) as (
        select 0::bigint, (select btc_total from locked)::numeric, false, null::numeric
        union all
        select w.n + 1, case when step.fits then w.total + step.amount else w.total end, step.fits,
          greatest(${cap}::numeric - w.total, 0)
        from walk w
        cross join lateral (select ((select a from amounts))[w.n + 1] as amount) a
        cross join lateral (
          select a.amount as amount,
            not exists (select from earlier e where e.n = w.n + 1) and w.total + a.amount <= ${cap}::numeric as fits
        ) step
        where w.n < ${orders.length}
      ),
      inserted as (
        insert into btc_orders (${ORDER_COLUMNS})
        -- created_at at whole milliseconds, the precision of a JS Date, so a page's cursor is exact.
        select i.id, i.user_id, i.currency, i.amount, i.btc_price, i.btc_amount, w.total, i.price_source, i.price_fetched_at,
          i.idempotency_key, i.request_hash, date_trunc('milliseconds', now())
        from walk w join input i using (n)
        where w.placed
        returning id, amount, btc_price, btc_amount, btc_total_after, created_at
      ),
      moved as (
        update btc_totals set btc_total = (select total from walk order by n desc limit 1) where id
      )
      select case when w.placed then 'placed' when e.id is not null then 'earlier' else 'refused' end as outcome,
        w.available::numeric(20, 8)::text as available,
        coalesce(ins.amount, o.amount) as amount, coalesce(ins.btc_price, o.btc_price) as btc_price,
        coalesce(ins.btc_amount, o.btc_amount) as btc_amount, coalesce(ins.btc_total_after, o.btc_total_after) as btc_total_after,
        coalesce(ins.created_at, o.created_at) as created_at,
        o.id, o.user_id, o.currency, o.price_source, o.price_fetched_at, o.idempotency_key, o.request_hash
      from walk w
      join input i using (n)
      left join inserted ins on ins.id = i.id
      left join earlier e on e.n = w.n
      -- One primary-key probe per earlier order (offset 0 keeps the planner from turning it
      -- into a join that could scan the table).
      left join lateral (select * from btc_orders o where o.id = e.id offset 0) o on true
      where w.n > 0
      order by w.n
    `.execute(db)
    if (rows.length !== orders.length) throw new Error(`placing ${orders.length} orders answered ${rows.length} rows`)
    return rows.map((row, i) => {
      if (row.outcome === 'refused') return { capExceeded: true, available: row.available! }
      if (row.outcome === 'earlier') {
        const { outcome: _outcome, available: _available, ...earlier } = row
        return { earlier: earlier as BtcOrderRow }
      }
      const order = orders[i]!
      return {
        placed: {
          id: order.id,
          user_id: order.userId,
          currency: order.currency,
          amount: row.amount!,
          btc_price: row.btc_price!,
          btc_amount: row.btc_amount!,
          btc_total_after: row.btc_total_after!,
          price_source: order.priceSource,
          price_fetched_at: order.priceFetchedAt,
          idempotency_key: order.idempotencyKey,
          request_hash: order.requestHash,
          created_at: row.created_at!,
        },
      }
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
