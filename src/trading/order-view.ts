/** Orders and transactions as the API, the SSE stream and the callbacks show them. */
import type { OrderRow, TransactionRow } from './db/tables.ts'
import { decimalNumber } from './money.ts'
import type { OrderView, TransactionView } from './trading.schemas.ts'

/** The public view of an order row. */
export function orderView(row: OrderRow): OrderView {
  return {
    order_id: row.id,
    user: row.user_id,
    stockname: row.stock,
    side: row.side,
    quantity: Number(row.quantity),
    status: row.status,
    reason: row.reason,
    price: row.price === null ? null : decimalNumber(row.price),
    amount: row.amount === null ? null : decimalNumber(row.amount),
    callback_url: row.callback_url,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    finished_at: row.finished_at === null ? null : row.finished_at.toISOString(),
  }
}

/** The public view of a transaction row. */
export function transactionView(row: TransactionRow): TransactionView {
  return {
    id: String(row.id),
    order_id: row.order_id,
    stockname: row.stock,
    side: row.side,
    quantity: Number(row.quantity),
    price: decimalNumber(row.price),
    amount: decimalNumber(row.amount),
    created_at: row.created_at.toISOString(),
  }
}

/** Whether an order has reached its final state. */
export function isFinal(status: OrderRow['status']): boolean {
  return status === 'filled' || status === 'rejected'
}

/** Where the API serves an order's status. */
export function statusUrl(orderId: string): string {
  return `/api/orders/${orderId}`
}
