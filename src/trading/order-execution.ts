/**
 * Moving an order to its states in PostgreSQL. Each order reaches exactly one final state:
 * the final update runs in one transaction that locks the order row first and does
 * nothing when the order is already final, so a verifier replaying an order after a
 * crash (or a second copy of its message) can never execute it twice. The money, the
 * shares, the transaction record and the callback to deliver are written in that same
 * transaction.
 */
import { sql, type Transaction } from 'kysely'
import type { Database, Db } from '../platform/db/index.ts'
import type { OrderRow, RejectReason, UserRow } from '../platform/db/schema.ts'
import { toUnits, unitsText } from './money.ts'
import { isFinal, orderView } from './order-view.ts'
import { createWebhookId } from './webhooks/webhook-signing.ts'
import { notifyDeliveries } from './webhooks/webhook.repository.ts'

/** How a verification ended. */
export type VerificationOutcome =
  | { verified: true; /** the stock's latest price; undefined for an unknown stock, null for one without a price */ price: number | null | undefined }
  | { verified: false; reason: Extract<RejectReason, 'verification_failed' | 'verification_timeout'> }

/** What {@link finishOrder} did. */
export interface FinishResult {
  order: OrderRow
  /** False when the order was already final (nothing written). */
  changed: boolean
  /** The user row after a fill (for the Redis projection). */
  user?: UserRow
}

/** Settings of the callback outbox. */
export interface CallbackSettings {
  /** How long a failing callback is retried. */
  retryForMs: number
  /** The database schema (its NOTIFY channel wakes the callback sender). */
  schema: string
}

/**
 * Marks an order as being verified, remembering when the first verification started (a
 * verifier restarted after a crash keeps the original deadline). Undefined when the
 * order is missing or already final.
 */
export async function startVerification(db: Db, orderId: string): Promise<OrderRow | undefined> {
  return db
    .updateTable('orders')
    .set({
      status: 'verifying',
      verification_started_at: sql`coalesce(verification_started_at, now())`,
      updated_at: sql`now()`,
    })
    .where('id', '=', orderId)
    .where('status', 'in', ['received', 'verifying'])
    .returningAll()
    .executeTakeFirst()
}

/** Applies a verification's outcome to an order, once. */
export async function finishOrder(
  db: Db,
  orderId: string,
  outcome: VerificationOutcome,
  callbacks: CallbackSettings,
): Promise<FinishResult> {
  return db.transaction().execute(async (trx) => {
    const order = await trx.selectFrom('orders').selectAll().where('id', '=', orderId).forUpdate().executeTakeFirst()
    if (!order) throw new Error(`order ${orderId} does not exist`)
    if (isFinal(order.status)) return { order, changed: false }
    const result = outcome.verified
      ? await execute(trx, order, outcome.price)
      : { order: await reject(trx, order, outcome.reason) }
    if (result.order.callback_url !== null) await enqueueCallback(trx, result.order, callbacks)
    return { ...result, changed: true }
  })
}

async function reject(trx: Transaction<Database>, order: OrderRow, reason: RejectReason): Promise<OrderRow> {
  return trx
    .updateTable('orders')
    .set({ status: 'rejected', reason, updated_at: sql`now()`, finished_at: sql`now()` })
    .where('id', '=', order.id)
    .returningAll()
    .executeTakeFirstOrThrow()
}

async function execute(
  trx: Transaction<Database>,
  order: OrderRow,
  price: number | null | undefined,
): Promise<{ order: OrderRow; user?: UserRow }> {
  if (price === undefined || price === null || !(price > 0)) return { order: await reject(trx, order, 'unknown_stock') }
  const user = await trx.selectFrom('users').selectAll().where('id', '=', order.user_id).forUpdate().executeTakeFirst()
  if (!user) return { order: await reject(trx, order, 'unknown_user') }
  const quantity = BigInt(order.quantity)
  const priceUnits = toUnits(price)
  const amount = unitsText(priceUnits * quantity)
  const priceText = unitsText(priceUnits)

  if (order.side === 'buy') {
    if (toUnits(user.credit) < priceUnits * quantity) return { order: await reject(trx, order, 'insufficient_credit') }
    await trx
      .insertInto('holdings')
      .values({ user_id: order.user_id, stock: order.stock, quantity: order.quantity, cost: amount })
      .onConflict((oc) =>
        oc.columns(['user_id', 'stock']).doUpdateSet({
          quantity: sql`holdings.quantity + excluded.quantity`,
          cost: sql`holdings.cost + excluded.cost`,
        }),
      )
      .execute()
  } else {
    const holding = await trx
      .selectFrom('holdings')
      .selectAll()
      .where('user_id', '=', order.user_id)
      .where('stock', '=', order.stock)
      .forUpdate()
      .executeTakeFirst()
    if (!holding || BigInt(holding.quantity) < quantity) {
      return { order: await reject(trx, order, 'insufficient_holdings') }
    }
    // The shares sold take their average cost with them.
    await trx
      .updateTable('holdings')
      .set({
        quantity: sql`quantity - ${order.quantity}::bigint`,
        cost: sql`round(cost * (quantity - ${order.quantity}::bigint) / quantity, 4)`,
      })
      .where('user_id', '=', order.user_id)
      .where('stock', '=', order.stock)
      .execute()
  }
  const credit = order.side === 'buy' ? sql<string>`credit - ${amount}::numeric` : sql<string>`credit + ${amount}::numeric`
  const updatedUser = await trx
    .updateTable('users')
    .set({ credit, version: sql`version + 1`, updated_at: sql`now()` })
    .where('id', '=', order.user_id)
    .returningAll()
    .executeTakeFirstOrThrow()
  await trx
    .insertInto('transactions')
    .values({
      order_id: order.id,
      user_id: order.user_id,
      stock: order.stock,
      side: order.side,
      quantity: order.quantity,
      price: priceText,
      amount,
    })
    .execute()
  const filled = await trx
    .updateTable('orders')
    .set({ status: 'filled', price: priceText, amount, updated_at: sql`now()`, finished_at: sql`now()` })
    .where('id', '=', order.id)
    .returningAll()
    .executeTakeFirstOrThrow()
  return { order: filled, user: updatedUser }
}

/**
 * Writes the order's callback to the outbox and wakes the callback sender: the NOTIFY is
 * delivered when the transaction commits, and not at all if it rolls back.
 */
async function enqueueCallback(trx: Transaction<Database>, order: OrderRow, settings: CallbackSettings): Promise<void> {
  const id = createWebhookId()
  const type = `order.${order.status}`
  const payload = JSON.stringify({ type, timestamp: new Date().toISOString(), data: orderView(order) })
  await trx
    .insertInto('webhook_deliveries')
    .values({
      id,
      order_id: order.id,
      user_id: order.user_id,
      url: order.callback_url!,
      event_type: type,
      payload,
      status: 'pending',
      expires_at: sql`now() + ${`${settings.retryForMs} milliseconds`}::interval`,
    })
    .onConflict((oc) => oc.column('order_id').doNothing())
    .execute()
  await notifyDeliveries(trx, settings.schema)
}
