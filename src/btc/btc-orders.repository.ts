/**
 * BTC orders in PostgreSQL: placing them under the cap (a batch per transaction), reading and paging.
 */
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import { idempotentId } from '../platform/idempotency.ts'
import { keysetPage, type Page, type PageRequest, isCursorInstant, isCursorUuid, readCursor } from '../platform/db/keyset.ts'
import type { BtcOrderRow } from './db/tables.ts'

/**
 * The id of a new order: under an idempotency key, the id the key stands for (the same for
 * every retry, by which {@link placeBtcOrders} finds an earlier one); else a random one.
 */
export function newBtcOrderId(userId: string, idempotencyKey: string | null): string {
  return idempotencyKey === null ? randomUUID() : idempotentId('bourse-btc-order', userId, idempotencyKey)
}

/**
 * An order to place; `id` from {@link newBtcOrderId}. The decimals are in the form
 * PostgreSQL writes them back (`amount` with 2 decimals, `btcAmount` with 8, `btcPrice` a
 * plain decimal, none with a leading zero): the order placed is answered from them.
 */
export interface NewBtcOrder {
  id: string
  userId: string
  currency: string
  /** The fiat paid, 2 decimals (`"250.00"`). */
  amount: string
  /** The price of 1 BTC, a plain decimal (`"61234.5"`). */
  btcPrice: string
  /** The BTC bought, 8 decimals (`"0.00408267"`). */
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

/**
 * Places a batch of orders under the cap in one statement (one round trip, one commit),
 * deciding them in the order given: the database function `bourse_place_btc_orders_v2`
 * (migration 0011, its body replaced by 0012's; 0010's `bourse_place_btc_orders` before
 * it) locks the totals row (`for update`), so batches, from this process or another,
 * follow one another; it then walks the orders in order, placing each if the total stays
 * within `cap` and refusing it otherwise, inserts the orders placed and moves the total on,
 * all before it commits. Each order keeps the total it took the cap to (`btc_total_after`),
 * and a refusal reports the BTC left at its turn: both are states of that one sequence.
 *
 * An order under an idempotency key carries the id the key stands for: when its user
 * already has an order under the key, the function finds it by that id (after the lock, so
 * also one that another batch placed meanwhile), and the outcome is that earlier order. A
 * second order of the batch under the same key as an earlier one of the batch waits for the
 * next statement, which finds the first. An order placed under a key before the ids were
 * derived from keys has another id: the unique (user, key) constraint stops its retry, which
 * is then resolved by a look-up per key ({@link settleOlderKeys}).
 *
 * An order placed is answered from the order given (with the total it took the cap to and
 * its creation time from the database): each of its decimals must be in the form
 * PostgreSQL writes back (see {@link NewBtcOrder}), or the batch is refused with a RangeError.
 *
 * Why one statement per batch: every order updates the one totals row, so placing them one
 * transaction each capped placement at the disk's commit rate, and a transaction of
 * several statements per batch spent the API's time on round trips (bench/btc.bench.ts).
 */
export async function placeBtcOrders(db: Db, orders: readonly NewBtcOrder[], cap: string): Promise<PlaceOutcome[]> {
  for (const order of orders) checkStoredForm(order)
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
 * Each field an order placed is answered from, in the form PostgreSQL writes it back: the
 * currency as `char(3)` (trailing spaces would be cut), the decimals as `numeric(14, 2)`,
 * `numeric(20, 8)` and `numeric` (no sign, no leading zero).
 */
const STORED_FORMS = [
  ['currency', /^[A-Z]{3}$/],
  ['amount', /^(?:0|[1-9]\d*)\.\d{2}$/],
  ['btcAmount', /^(?:0|[1-9]\d*)\.\d{8}$/],
  ['btcPrice', /^(?:0|[1-9]\d*)(?:\.\d+)?$/],
] as const

/** Throws unless the order's fields read back as sent (an order placed is answered from them). */
function checkStoredForm(order: NewBtcOrder): void {
  for (const [field, form] of STORED_FORMS) {
    if (!form.test(order[field])) throw new RangeError(`order ${order.id}: ${field} ${JSON.stringify(order[field])} is not in the form PostgreSQL stores`)
  }
}

/**
 * One row of `bourse_place_btc_orders_v2` (migrations 0011 and 0012): the outcome; for an order placed,
 * the total it took the cap to and the batch's creation time (ISO 8601 text);
 * for a refusal, the BTC still available; for an earlier order, its whole row.
 */
type PlacedRow = {
  outcome: 'placed' | 'earlier' | 'refused'
  available: string | null
  placed_total_after: string | null
  placed_created_at: string | null
} & { [K in keyof BtcOrderRow]: BtcOrderRow[K] | null }

/** The row of an order just placed: what was sent, as stored, and what the database decided. */
function placedRow(order: NewBtcOrder, totalAfter: string, createdAt: Date): BtcOrderRow {
  return {
    id: order.id,
    user_id: order.userId,
    currency: order.currency,
    amount: order.amount,
    btc_price: order.btcPrice,
    btc_amount: order.btcAmount,
    btc_total_after: totalAfter,
    price_source: order.priceSource,
    price_fetched_at: order.priceFetchedAt,
    idempotency_key: order.idempotencyKey,
    request_hash: order.requestHash,
    created_at: createdAt,
  }
}

/** {@link placeBtcOrders} for orders whose idempotency keys differ. */
async function placeOnce(db: Db, orders: readonly NewBtcOrder[], cap: string): Promise<PlaceOutcome[]> {
  // The batch as one JSON parameter: one text for the driver to send and PostgreSQL to
  // read, where an array per column made the driver escape every value. The orders of one
  // quote share its fetch time, formatted once: JSON.stringify of a Date cost 1 µs per
  // order, four times the rest of the order's JSON.
  let fetchedAt: Date | undefined
  let fetchedAtText = ''
  const batch = JSON.stringify(
    orders.map((o) => {
      if (o.priceFetchedAt !== fetchedAt) {
        fetchedAt = o.priceFetchedAt
        fetchedAtText = fetchedAt.toISOString()
      }
      return [o.id, o.userId, o.currency, o.amount, o.btcPrice, o.btcAmount, o.priceSource, fetchedAtText, o.idempotencyKey, o.requestHash]
    }),
  )
  try {
    const { rows } = await sql<PlacedRow>`select * from bourse_place_btc_orders_v2(${batch}::jsonb, ${cap}::numeric)`.execute(db)
    if (rows.length !== orders.length) throw new Error(`placing ${orders.length} orders answered ${rows.length} rows`)
    // The function gives every order placed the batch's one creation time: one Date for them.
    let createdAt: Date | undefined
    return rows.map((row, i): PlaceOutcome => {
      if (row.outcome === 'placed') {
        if (row.placed_total_after === null || row.placed_created_at === null) {
          throw new Error('the placing function answered a placed order without its total or time (is migration 0011 applied?)')
        }
        createdAt ??= new Date(row.placed_created_at)
        return { placed: placedRow(orders[i]!, row.placed_total_after, createdAt) }
      }
      if (row.outcome === 'refused') return { capExceeded: true, available: row.available! }
      const { outcome: _outcome, available: _available, placed_total_after: _after, placed_created_at: _created, ...earlier } = row
      return { earlier: earlier as BtcOrderRow }
    })
  } catch (err) {
    const pgError = err as { code?: string; constraint?: string }
    if (pgError.code === '23505' && pgError.constraint === 'btc_orders_user_idempotency_key') return settleOlderKeys(db, orders, cap)
    throw err
  }
}

/**
 * The batch again when one of its keys is held by an order whose id the key does not
 * stand for (placed before ids were derived from keys): each keyed order is looked up by
 * (user, key) first, those found are their earlier orders, the rest are placed.
 */
async function settleOlderKeys(db: Db, orders: readonly NewBtcOrder[], cap: string): Promise<PlaceOutcome[]> {
  const found = await Promise.all(
    orders.map((o) => (o.idempotencyKey === null ? undefined : findByIdempotencyKey(db, o.userId, o.idempotencyKey))),
  )
  const rest = orders.filter((_, i) => found[i] === undefined)
  const placed = rest.length === orders.length ? undefined : await placeOnce(db, rest, cap)
  if (placed === undefined) throw new Error('an idempotency key is taken, but no order holds it')
  let next = 0
  return found.map((earlier) => (earlier === undefined ? placed[next++]! : { earlier }))
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
