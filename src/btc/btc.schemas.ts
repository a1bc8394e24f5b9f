/** The BTC orders API's TypeBox schemas. */
import Type, { type Static } from 'typebox'

/** The rounding rule, stated once for the API description and the schemas. */
export const ROUNDING_RULE =
  '`btc_amount` = `amount` / `btc_price`, cut to 8 decimals toward zero (ROUND_DOWN): never more BTC than was paid for, ' +
  'and rounding never pushes the total past the cap. All arithmetic is exact decimal arithmetic.'

const Currency = Type.Union([Type.Literal('EUR'), Type.Literal('GBP'), Type.Literal('USD')], { description: 'The fiat currency paid in' })
const Decimal = (description: string) => Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description })
const Instant = (description: string) => Type.String({ format: 'date-time', description })

/** The body of `POST /api/btc/orders`. */
export const CreateBtcOrderBody = Type.Object(
  {
    currency: Currency,
    amount: Type.Union([Type.Number(), Type.String({ maxLength: 40 })], {
      description: 'The fiat amount: greater than 0, less than 1000000000, at most 2 decimals; a JSON number or a decimal string',
    }),
  },
  { additionalProperties: false, examples: [{ currency: 'EUR', amount: '250.50' }] },
)
export type CreateBtcOrderBody = Static<typeof CreateBtcOrderBody>

/** The `Idempotency-Key` header. */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ description: 'Makes retries safe: the same key and body return the same order; another body is 409' }),
  ),
})

/** An order as the API shows it. */
export const BtcOrderView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  user_id: Type.String(),
  currency: Currency,
  amount: Decimal('The fiat amount paid, 2 decimals'),
  btc_price: Decimal('The price of 1 BTC in `currency` the order was priced at'),
  btc_amount: Decimal(`The BTC bought, 8 decimals. ${ROUNDING_RULE}`),
  price_source: Type.String({ description: 'The provider of the price' }),
  price_fetched_at: Instant('When the price was fetched from the provider'),
  created_at: Instant('When the order was placed'),
})
export type BtcOrderView = Static<typeof BtcOrderView>

/** The `{id}` of an order's path. */
export const BtcOrderIdParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'The order id' }) })

const CurrencyQuoteView = Type.Object({
  price: Decimal('The price of 1 BTC'),
  source: Type.String({ description: 'The provider of the price' }),
  fetched_at: Instant('When it was fetched'),
  age_ms: Type.Integer({ description: 'How old it is, in ms' }),
  stale: Type.Boolean({ description: 'Older than `BTC_PRICE_MAX_AGE_MS`: orders in this currency are refused (503)' }),
})

/** The cached quotes: a currency without a valid quote is null. */
export const BtcPriceView = Type.Object({
  EUR: Type.Union([CurrencyQuoteView, Type.Null()]),
  GBP: Type.Union([CurrencyQuoteView, Type.Null()]),
  USD: Type.Union([CurrencyQuoteView, Type.Null()]),
  max_age_ms: Type.Integer({ description: 'The oldest quote an order is priced at (`BTC_PRICE_MAX_AGE_MS`)' }),
})
export type BtcPriceView = Static<typeof BtcPriceView>
