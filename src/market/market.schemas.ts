/** The market data API's TypeBox schemas. */
import Type, { type Static } from 'typebox'
import { pageQueryFields } from '../platform/http/paging.ts'

const TIME_PATTERN = '^([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$'
const Price = Type.Union([Type.Number(), Type.Null()], { description: 'A price; null when no data was reported' })

/** The `{stock}` of a path. */
export const StockParams = Type.Object({
  stock: Type.String({ minLength: 1, maxLength: 64, description: 'The stock key, e.g. `stock1`', examples: ['stock1'] }),
})
export type StockParams = Static<typeof StockParams>

/** A stock in the list. */
export const StockSummaryView = Type.Object(
  {
    stock: Type.String(),
    price: Type.Union([Type.Number(), Type.Null()], {
      description: 'The latest price reported: the last priced entry of the history (the price BuyStock uses); null without any',
    }),
    time: Type.Union([Type.String(), Type.Null()], { description: 'The time of that price' }),
    first_price: Type.Union([Type.Number(), Type.Null()], { description: "The first price reported in the history (the day's first)" }),
    change: Type.Union([Type.Number(), Type.Null()], { description: '`price - first_price`, computed in exact decimal' }),
    performance: Type.Union([Type.Number(), Type.Null()], { description: 'The performance the performance service stored' }),
    ticks: Type.Integer({ description: 'Entries (times) in the history, priced or not' }),
  },
  {
    examples: [{ stock: 'stock1', price: 1041, time: '090031', first_price: 1000, change: 41, performance: 0.041, ticks: 3 }],
  },
)

/** `GET /api/stocks`. */
export const StockListView = Type.Object(
  { items: Type.Array(StockSummaryView) },
  { examples: [{ items: [{ stock: 'stock1', price: 1041, time: '090031', first_price: 1000, change: 41, performance: 0.041, ticks: 3 }] }] },
)
export type StockListView = Static<typeof StockListView>

/** One entry of a history. */
export const HistoryEntryView = Type.Object({ time: Type.String({ description: 'The time, as reported (`hhmmss`)' }), price: Price })

/** `GET /api/stocks/{stock}`: a page of the contract view. */
export const StockView = Type.Object(
  {
    stock: Type.String(),
    performance: Type.Union([Type.Number(), Type.Null()]),
    ticks: Type.Integer({ description: 'Entries in the whole history' }),
    items: Type.Array(HistoryEntryView, { description: 'Entries of the history, newest first (the reverse of the contract order)' }),
    next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for older entries; null on the last page' }),
  },
  {
    examples: [
      {
        stock: 'stock1',
        performance: 0.041,
        ticks: 3,
        items: [
          { time: '090031', price: 1041 },
          { time: '09:01', price: null },
        ],
        next_cursor: 'WyJzdG9jazEiLCIxIl0',
      },
    ],
  },
)
export type StockView = Static<typeof StockView>

/** The query of `GET /api/stocks/{stock}`. */
export const StockPageQuery = Type.Object(pageQueryFields, { additionalProperties: false })

/** The query of the candles route. */
export const CandleQuery = Type.Object(
  {
    interval: Type.Union([Type.Literal('1m'), Type.Literal('5m'), Type.Literal('1h')], {
      description: 'The width of a candle: `1m`, `5m` or `1h`',
      examples: ['1m'],
    }),
    from: Type.Optional(Type.String({ pattern: TIME_PATTERN, description: 'First time, `hhmmss` (its bucket is included)', default: '000000', examples: ['090000'] })),
    to: Type.Optional(Type.String({ pattern: TIME_PATTERN, description: 'Last time, `hhmmss` (its bucket is included); not before `from`', default: '235959', examples: ['095959'] })),
  },
  { additionalProperties: false },
)
export type CandleQuery = Static<typeof CandleQuery>

/** One candle. */
export const CandleView = Type.Object({
  time: Type.String({ description: 'Start of the bucket, `hhmmss`' }),
  open: Type.Number({ description: 'The price at the earliest time of the bucket' }),
  high: Type.Number(),
  low: Type.Number(),
  close: Type.Number({ description: 'The price at the latest time of the bucket' }),
  volume: Type.Integer({ description: 'The number of ticks (priced times) in the bucket: no traded volume is reported' }),
})

/** `GET /api/stocks/{stock}/candles`. */
export const CandlesView = Type.Object(
  { stock: Type.String(), interval: Type.String(), items: Type.Array(CandleView, { description: 'Oldest first; a bucket without a priced tick has no candle' }) },
  {
    examples: [
      { stock: 'stock1', interval: '1m', items: [{ time: '090000', open: 1041, high: 1041, low: 1008, close: 1008, volume: 2 }] },
    ],
  },
)
export type CandlesView = Static<typeof CandlesView>

/** The query of the tick stream. */
export const StreamQuery = Type.Object(
  {
    stocks: Type.Optional(
      Type.String({ maxLength: 2000, description: 'Comma-separated stocks to follow; every stock when absent', examples: ['stock1,stock2'] }),
    ),
  },
  { additionalProperties: false },
)

/** The headers of the tick stream. */
export const StreamHeaders = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({ description: 'Resume after this event id (the `id:` of the last event received)', examples: ['1765094400000-0'] }),
  ),
})
