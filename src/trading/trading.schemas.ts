/**
 * The trading API's request and response shapes (TypeBox), shared by routes, the OpenAPI
 * document and the types of the code behind them.
 */
import Type, { type Static } from 'typebox'
import { OrderSide, OrderStatus, RejectReason } from './db/tables.ts'

// The order's column values: one schema for the table and the API.
export { OrderSide, OrderStatus, RejectReason }

/** A user account name such as `user1`. */
export const UserName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'Account name', examples: ['user1'] })
/** A stock name such as `stock1`. */
export const StockName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'Stock name', examples: ['stock1'] })
/** Shares in one order. */
export const Quantity = Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Number of shares', examples: [100] })

export const BuyStockBody = Type.Object(
  { user: UserName, stockname: StockName, quantity: Quantity },
  { additionalProperties: false, examples: [{ user: 'user1', stockname: 'stock1', quantity: 100 }] },
)
export type BuyStockBody = Static<typeof BuyStockBody>

export const BuyStockDecision = Type.Object(
  {
    decision: Type.Union([Type.Literal('Accept'), Type.Literal('Deny')]),
    price: Type.Number({ description: "The stock's latest price" }),
    cost: Type.Number({ description: 'price x quantity' }),
    credit: Type.Number({ description: "The user's credit" }),
  },
  { examples: [{ decision: 'Accept', price: 1000, cost: 100000, credit: 150000000 }] },
)
export type BuyStockDecision = Static<typeof BuyStockDecision>

export const CreateOrderBody = Type.Object(
  {
    user: UserName,
    stockname: StockName,
    quantity: Quantity,
    side: OrderSide,
    callback_url: Type.Optional(
      Type.String({ minLength: 8, maxLength: 2048, description: 'Where the result is POSTed (Standard Webhooks signed)' }),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ user: 'user1', stockname: 'stock1', quantity: 10, side: 'buy', callback_url: 'https://example.com/hooks/orders' }],
  },
)
export type CreateOrderBody = Static<typeof CreateOrderBody>

export const OrderAccepted = Type.Object(
  {
    order_id: Type.String({ format: 'uuid' }),
    status: OrderStatus,
    status_url: Type.String(),
  },
  { examples: [{ order_id: '5f0c6f7e-8d5a-4f0e-9d6b-2b1f3c4d5e6f', status: 'received', status_url: '/api/orders/5f0c6f7e-8d5a-4f0e-9d6b-2b1f3c4d5e6f' }] },
)
export type OrderAccepted = Static<typeof OrderAccepted>

/** An order as the API and the callbacks show it. */
export const OrderView = Type.Object(
  {
    order_id: Type.String({ format: 'uuid' }),
    user: Type.String(),
    stockname: Type.String(),
    side: OrderSide,
    quantity: Type.Integer(),
    status: OrderStatus,
    reason: Type.Union([RejectReason, Type.Null()]),
    price: Type.Union([Type.Number(), Type.Null()]),
    amount: Type.Union([Type.Number(), Type.Null()]),
    callback_url: Type.Union([Type.String(), Type.Null()]),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
    finished_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  {
    examples: [
      {
        order_id: '5f0c6f7e-8d5a-4f0e-9d6b-2b1f3c4d5e6f',
        user: 'user1',
        stockname: 'stock1',
        side: 'buy',
        quantity: 10,
        status: 'filled',
        reason: null,
        price: 1000,
        amount: 10000,
        callback_url: null,
        created_at: '2026-01-02T09:00:00.000Z',
        updated_at: '2026-01-02T09:00:31.000Z',
        finished_at: '2026-01-02T09:00:31.000Z',
      },
    ],
  },
)
export type OrderView = Static<typeof OrderView>

export const Holding = Type.Object({
  stockname: Type.String(),
  quantity: Type.Integer(),
  cost: Type.Number({ description: 'What the shares cost in total' }),
  price: Type.Union([Type.Number(), Type.Null()], { description: 'Latest price (null when the stock has none)' }),
  value: Type.Union([Type.Number(), Type.Null()], { description: 'quantity x latest price' }),
})

export const Portfolio = Type.Object(
  {
    user: Type.String(),
    credit: Type.Number(),
    holdings: Type.Array(Holding),
    holdings_value: Type.Number({ description: 'Sum of the holdings valued at their latest price' }),
  },
  { examples: [{ user: 'user1', credit: 149990000, holdings: [{ stockname: 'stock1', quantity: 10, cost: 10000, price: 1000, value: 10000 }], holdings_value: 10000 }] },
)
export type Portfolio = Static<typeof Portfolio>

export const TransactionView = Type.Object({
  id: Type.String(),
  order_id: Type.String({ format: 'uuid' }),
  stockname: Type.String(),
  side: OrderSide,
  quantity: Type.Integer(),
  price: Type.Number(),
  amount: Type.Number(),
  created_at: Type.String({ format: 'date-time' }),
})
export type TransactionView = Static<typeof TransactionView>
