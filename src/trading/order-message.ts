/**
 * The order as it travels through Kafka to the verifier: keyed by order id (so every copy
 * of an order lands on one partition, in one verifier), carrying everything needed to
 * create the order row, so the row exists even if the API died between sending and
 * inserting.
 */
import Type, { type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import type { NewOrder } from './db/tables.ts'
import { OrderSide, Quantity, StockName, UserName } from './trading.schemas.ts'

export const OrderMessage = Type.Object(
  {
    v: Type.Literal(1),
    id: Type.String({ format: 'uuid' }),
    user: UserName,
    stock: StockName,
    side: OrderSide,
    quantity: Quantity,
    callback_url: Type.Union([Type.String({ maxLength: 2048 }), Type.Null()]),
    idempotency_key: Type.Union([Type.String({ maxLength: 255 }), Type.Null()]),
    request_hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    created_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
)
export type OrderMessage = Static<typeof OrderMessage>

const check = Compile(OrderMessage)

/** Encodes an order for the orders topic. */
export function encodeOrderMessage(order: OrderMessage): string {
  return JSON.stringify(order)
}

/** Decodes and validates a message; throws an Error naming the problem (dead-letter it). */
export function decodeOrderMessage(text: string): OrderMessage {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new Error(`order message is not JSON: ${(err as Error).message}`)
  }
  if (!check.Check(value)) {
    const first = [...check.Errors(value)][0]
    throw new Error(`invalid order message at ${first?.instancePath || '/'}: ${first?.message ?? 'invalid'}`)
  }
  return value
}

/** The order row an order message describes, as first received. */
export function orderRowFromMessage(message: OrderMessage): NewOrder {
  return {
    id: message.id,
    user_id: message.user,
    stock: message.stock,
    side: message.side,
    quantity: message.quantity,
    callback_url: message.callback_url,
    status: 'received',
    idempotency_key: message.idempotency_key,
    request_hash: message.request_hash,
    created_at: message.created_at,
    updated_at: message.created_at,
  }
}
