/**
 * Moving an order to its states in PostgreSQL. Each order reaches exactly one final state:
 * the final update locks the order row first and does nothing when the order is already
 * final, so a verifier replaying an order after a crash (or a second copy of its message)
 * can never execute it twice. The money, the shares, the transaction record, the final
 * state and the callback to deliver are written by one statement, atomically.
 *
 * Orders are finished in batches ({@link finishOrders}, {@link createOrderFinisher}): one
 * call of the `bourse_finish_orders` function (migrations 0003 and 0004, which hold the
 * state changes, their locking order and the callbacks' bodies), which also wakes the
 * callback senders with one NOTIFY. The users' row locks are held for that one statement:
 * thousands of orders of one user do not queue on them.
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { OrderRow, RejectReason, UserRow } from './db/tables.ts'
import { isRefusedByDatabase } from '../platform/retry.ts'
import { toUnits, unitsText } from './money.ts'
import { webhookOutbox } from './webhooks/webhook.repository.ts'

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

/** One order to finish, for {@link finishOrders}. */
export interface FinishItem {
  orderId: string
  outcome: VerificationOutcome
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

/** Applies a verification's outcome to an order, once. Throws when the order does not exist. */
export async function finishOrder(
  db: Db,
  orderId: string,
  outcome: VerificationOutcome,
  callbacks: CallbackSettings,
): Promise<FinishResult> {
  const [result] = await finishOrders(db, [{ orderId, outcome }], callbacks)
  if (!result) throw new Error(`order ${orderId} does not exist`)
  return result
}

/** An item as `bourse_finish_orders` takes it. */
interface FinishInput {
  /** Position in the batch. */
  n: number
  order_id: string
  verified: boolean
  /** Decimal text with 4 places; null for an unknown or unpriced stock (rejected `unknown_stock`). */
  price: string | null
  reason: RejectReason | null
}

/** The SQL function's input for one item. Throws a RangeError for a price that is not a finite number. */
function finishInput(item: FinishItem, n: number): FinishInput {
  const { orderId, outcome } = item
  if (!outcome.verified) return { n, order_id: orderId, verified: false, price: null, reason: outcome.reason }
  const { price } = outcome
  const priced = price !== undefined && price !== null && price > 0
  // Rounded to the 4 places of numeric(20,4) before it is multiplied, as the amount always was.
  return { n, order_id: orderId, verified: true, price: priced ? unitsText(toUnits(price)) : null, reason: null }
}

/** A row of `bourse_finish_orders`: the order's columns (all null for a missing order) and the user's, prefixed. */
type FinishedRow = { item_n: number; item_changed: boolean } & { [K in keyof OrderRow]: OrderRow[K] | null } & {
  [K in keyof UserRow as `u_${K}`]: UserRow[K] | null
}

/**
 * Applies verification outcomes to orders, each once, in one statement: the state
 * changes and the callbacks of the orders it changed (with one NOTIFY).
 * Resolves to one result per item, in the items' order; undefined where the order does
 * not exist (nothing is written for it). Items of one user are applied in their order
 * here (it decides which of two buys a credit covers).
 */
export async function finishOrders(
  db: Db,
  items: readonly FinishItem[],
  callbacks: CallbackSettings,
): Promise<Array<FinishResult | undefined>> {
  if (items.length === 0) return []
  return finishInputs(db, items.map(finishInput), callbacks)
}

async function finishInputs(
  db: Db,
  inputs: readonly FinishInput[],
  callbacks: CallbackSettings,
): Promise<Array<FinishResult | undefined>> {
  const { rows } = await sql<FinishedRow>`
    select f.item_n, f.item_changed, (f.order_row).*,
      (f.user_row).id as u_id, (f.user_row).contract_id as u_contract_id, (f.user_row).credit as u_credit,
      (f.user_row).webhook_secret as u_webhook_secret, (f.user_row).version as u_version,
      (f.user_row).created_at as u_created_at, (f.user_row).updated_at as u_updated_at
    from bourse_finish_orders(
      ${JSON.stringify(inputs)}::jsonb, ${webhookOutbox(callbacks.schema).channel}, ${callbacks.retryForMs}::double precision
    ) as f
  `.execute(db)
  const results = Array.from<FinishResult | undefined>({ length: inputs.length })
  for (const row of rows) {
    const { item_n, item_changed, u_id, u_contract_id, u_credit, u_webhook_secret, u_version, u_created_at, u_updated_at, ...columns } =
      row
    if (columns.id === null) continue
    const result: FinishResult = { order: columns as OrderRow, changed: item_changed }
    if (u_id !== null) {
      result.user = {
        id: u_id,
        contract_id: u_contract_id,
        credit: u_credit!,
        webhook_secret: u_webhook_secret!,
        version: u_version!,
        created_at: u_created_at!,
        updated_at: u_updated_at!,
      }
    }
    results[item_n] = result
  }
  return results
}

/** Options of {@link createOrderFinisher}. */
export interface OrderFinisherOptions {
  /** Most orders finished by one statement. @defaultValue 200 */
  maxBatch?: number
  /** How long the first order queued waits for others before its batch starts, in ms. @defaultValue 1 */
  windowMs?: number
  /** Batches in flight at once; orders queued meanwhile go in the next. @defaultValue 2 */
  concurrency?: number
}

/** Finishes orders in batches. */
export interface OrderFinisher {
  /**
   * Queues an order's outcome for the next batch; resolves when that batch committed.
   * Rejects when the order does not exist or the batch failed (nothing of it was written).
   */
  finish(orderId: string, outcome: VerificationOutcome): Promise<FinishResult>
}

/**
 * Collects the outcomes that arrive close together and finishes them with
 * {@link finishOrders}: a batch starts `windowMs` after its first order, or as soon as
 * `maxBatch` wait, provided fewer than `concurrency` batches are running; while they
 * are, orders keep gathering (under load the batches grow instead of queueing).
 *
 * A batch PostgreSQL refuses (class 22 or 23: an order id that is not a UUID, say) is
 * finished again one order at a time, so only the order at fault fails.
 */
export function createOrderFinisher(db: Db, callbacks: CallbackSettings, options: OrderFinisherOptions = {}): OrderFinisher {
  const maxBatch = options.maxBatch ?? 200
  const windowMs = options.windowMs ?? 1
  const concurrency = options.concurrency ?? 2
  interface Queued {
    input: FinishInput
    done: PromiseWithResolvers<FinishResult>
  }
  let queue: Queued[] = []
  /** The first queued order has waited its window. */
  let due = false
  let timer: NodeJS.Timeout | undefined
  let running = 0

  const settle = (queued: Queued, result: FinishResult | undefined) => {
    if (result) queued.done.resolve(result)
    else queued.done.reject(new Error(`order ${queued.input.order_id} does not exist`))
  }

  const finishBatch = async (batch: Queued[]) => {
    const inputs = batch.map((q, n) => ({ ...q.input, n }))
    try {
      const results = await finishInputs(db, inputs, callbacks)
      batch.forEach((queued, n) => settle(queued, results[n]))
    } catch (err) {
      if (batch.length === 1 || !isRefusedByDatabase(err)) {
        for (const queued of batch) queued.done.reject(err)
        return
      }
      await Promise.all(
        batch.map((queued) =>
          finishInputs(db, [{ ...queued.input, n: 0 }], callbacks).then(
            (results) => settle(queued, results[0]),
            (alone: unknown) => queued.done.reject(alone),
          ),
        ),
      )
    }
  }

  const pump = () => {
    while (running < concurrency && queue.length > 0 && (due || queue.length >= maxBatch)) {
      const batch = queue.slice(0, maxBatch)
      queue = queue.slice(maxBatch)
      if (queue.length === 0) {
        due = false
        clearTimeout(timer)
        timer = undefined
      }
      running++
      void finishBatch(batch).finally(() => {
        running--
        pump()
      })
    }
  }

  return {
    finish(orderId, outcome) {
      const done = Promise.withResolvers<FinishResult>()
      let input: FinishInput
      try {
        input = finishInput({ orderId, outcome }, 0)
      } catch (err) {
        return Promise.reject(err as Error)
      }
      queue.push({ input, done })
      if (queue.length === 1 && !due) {
        timer = setTimeout(() => {
          timer = undefined
          due = true
          pump()
        }, windowMs)
      }
      pump()
      return done.promise
    },
  }
}
