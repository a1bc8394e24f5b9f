/**
 * The trading domain's tables, as Kysely sees them. Its migrations (`./migrations`)
 * create them; these types must follow every migration.
 *
 * Money is `numeric(20,4)`: pg returns it as a string (no float rounding), and arithmetic
 * on it happens in SQL.
 *
 * A column holding one of a few values has its TypeBox schema here, and its type is
 * derived from it; the API's schemas use the same schema, so a new value is added once.
 */
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import Type, { type Static } from 'typebox'
import type { BigIntColumn, CreatedAt, Numeric } from '../../platform/db/columns.ts'

/** Trading accounts. The Redis keys `userN` are a projection of this table. */
export interface UsersTable {
  /** The account name, as in the market data contract (`user1`). */
  id: string
  /** The numeric `id` field of the contract JSON (`{"id": 1, "credit": ...}`). */
  contract_id: number | null
  credit: Numeric
  /** Standard Webhooks secret (`whsec_` + base64) signing this user's callbacks. */
  webhook_secret: string
  /** Incremented by every committed change; the Redis projection keeps the newest. */
  version: ColumnType<string, string | number | undefined, string | number>
  created_at: CreatedAt
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>
}

/** Shares of a stock a user holds, with what they cost in total. */
export interface HoldingsTable {
  user_id: string
  stock: string
  quantity: BigIntColumn
  cost: Numeric
}

/** Which way an order goes. */
export const OrderSide = Type.Union([Type.Literal('buy'), Type.Literal('sell')])
export type OrderSide = Static<typeof OrderSide>

/** Order states: `received` → `verifying` → `filled` | `rejected` (the check of migration 0001). */
export const OrderStatus = Type.Union([
  Type.Literal('received'),
  Type.Literal('verifying'),
  Type.Literal('filled'),
  Type.Literal('rejected'),
])
export type OrderStatus = Static<typeof OrderStatus>

/** Why an order was rejected. */
export const RejectReason = Type.Union([
  Type.Literal('insufficient_credit'),
  Type.Literal('insufficient_holdings'),
  Type.Literal('verification_failed'),
  Type.Literal('verification_timeout'),
  Type.Literal('unknown_stock'),
  Type.Literal('unknown_user'),
])
export type RejectReason = Static<typeof RejectReason>

/** Orders to buy or sell a stock. */
export interface OrdersTable {
  id: string
  user_id: string
  stock: string
  side: OrderSide
  quantity: BigIntColumn
  callback_url: string | null
  status: OrderStatus
  reason: RejectReason | null
  /** The price the order executed at (filled orders). */
  price: ColumnType<string | null, string | number | null | undefined, string | number | null>
  /** price x quantity (filled orders). */
  amount: ColumnType<string | null, string | number | null | undefined, string | number | null>
  idempotency_key: string | null
  /** SHA-256 of the request, to tell a retry from a different request with the same key. */
  request_hash: string
  created_at: CreatedAt
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>
  verification_started_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  finished_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** The money and shares that moved for a filled order (one per order at most). */
export interface TransactionsTable {
  /** bigserial: read as a string. */
  id: ColumnType<string, never, never>
  order_id: string
  user_id: string
  stock: string
  side: OrderSide
  quantity: BigIntColumn
  price: Numeric
  amount: Numeric
  created_at: CreatedAt
}

/** Delivery states of a callback. */
export const DeliveryStatus = Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('dead')])
export type DeliveryStatus = Static<typeof DeliveryStatus>

/**
 * Callbacks to deliver (a transactional outbox): written in the same transaction as the
 * order's final state, so a committed result always has its callback. One per order.
 */
export interface WebhookDeliveriesTable {
  /** The Standard Webhooks `webhook-id`: the same on every attempt. */
  id: string
  order_id: string
  user_id: string
  url: string
  event_type: string
  /** The exact body sent (and signed). */
  payload: string
  status: DeliveryStatus
  attempts: Generated<number>
  next_attempt_at: ColumnType<Date, Date | string | undefined, Date | string>
  /** A sender holds the delivery until then; after it, another sender may take it. */
  lease_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  /** After this, a failing delivery becomes a dead letter. */
  expires_at: ColumnType<Date, Date | string, Date | string>
  last_error: string | null
  last_status: number | null
  created_at: CreatedAt
  delivered_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** The trading domain's tables, for the application's `Database`. */
export interface TradingTables {
  users: UsersTable
  holdings: HoldingsTable
  orders: OrdersTable
  transactions: TransactionsTable
  webhook_deliveries: WebhookDeliveriesTable
}

export type UserRow = Selectable<UsersTable>
export type NewUser = Insertable<UsersTable>
export type HoldingRow = Selectable<HoldingsTable>
export type OrderRow = Selectable<OrdersTable>
export type NewOrder = Insertable<OrdersTable>
export type OrderUpdate = Updateable<OrdersTable>
export type TransactionRow = Selectable<TransactionsTable>
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>
