/**
 * The BTC orders API: buy BTC with EUR, GBP or USD at the cached quote, under a cap on the
 * BTC all orders together may buy; list and read orders; read the quote.
 *
 * Who sees what: an order belongs to the user of the token that placed it; a user token
 * reads its own orders (another user's is 404, as if it did not exist), an admin token
 * reads every order. Placing an order needs a user token.
 */
import { hash } from 'node:crypto'
import type { Db } from '../database.ts'
import { mapPage } from '../platform/db/keyset.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import { type Principal, principalOf, requireAuth } from '../platform/http/auth.ts'
import { BadRequest, Conflict, ErrorResponseSchema, Forbidden, NotFound, ServiceUnavailable } from '../platform/http/errors.ts'
import { jsonBodyParser } from '../platform/http/json-body.ts'
import { PageQuery, pageRequest, PageSchema } from '../platform/http/paging.ts'
import type { Redis } from '../platform/redis.ts'
import { IDEMPOTENCY_KEY } from '../platform/idempotency.ts'
import { createSerialBatcher } from '../platform/serial-batcher.ts'
import { createTurnLoader } from '../platform/turn-loader.ts'
import { btcAmount, parseFiatAmount, smallestFiatAmount, ZERO_BTC } from './btc-amount.ts'
import {
  findBtcOrder,
  findByIdempotencyKey,
  listBtcOrders,
  type NewBtcOrder,
  newBtcOrderId,
  type PlaceOutcome,
  placeBtcOrders,
} from './btc-orders.repository.ts'
import { BtcOrderIdParams, BtcOrderView, BtcPriceView, CreateBtcOrderBody, IdempotencyHeaders, ROUNDING_RULE } from './btc.schemas.ts'
import type { BtcOrderRow } from './db/tables.ts'
import { BTC_CURRENCIES, type BtcCurrency, readBtcQuote } from './quote.ts'

/** What {@link btcRoutes} needs. */
export interface BtcRoutesDeps {
  db: Db
  /** Where the price poller caches the quote. */
  redis: Redis
  /** Most BTC all orders together may buy (`BTC_CAP`), a decimal string. */
  cap: string
  /** Oldest quote an order is priced at, in ms (`BTC_PRICE_MAX_AGE_MS`). */
  maxAgeMs: number
  /** How long a read of the cached quote serves orders, in ms (`BTC_QUOTE_READ_KEEP_MS`; 0: a read per turn). */
  quoteKeepMs: number
  /** The clock, in ms since the epoch. @defaultValue Date.now */
  now?: () => number
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

/**
 * How far in the future a quote's `fetched_at` may be (clocks of two hosts differ a little);
 * beyond it the quote is garbled, and would otherwise stay fresh for ever.
 */
const QUOTE_CLOCK_SKEW_MS = 5_000

/** Seconds a client should wait for a fresh quote: the poller refreshes every 15 s. */
const QUOTE_RETRY_AFTER_SECONDS = 15

/** An order row as the API shows it. */
function orderView(row: BtcOrderRow): BtcOrderView {
  return {
    id: row.id,
    user_id: row.user_id,
    currency: row.currency as BtcCurrency,
    amount: row.amount,
    btc_price: row.btc_price,
    btc_amount: row.btc_amount,
    price_source: row.price_source,
    price_fetched_at: row.price_fetched_at.toISOString(),
    created_at: row.created_at.toISOString(),
  }
}

/** The user whose orders the caller reads: its own, or undefined for an admin (everyone's); 403 for an application. */
function readerOf(principal: Principal): string | undefined {
  if (principal.admin) return undefined
  if (principal.userId === null) throw new Forbidden('BTC orders need a user token or an admin token')
  return principal.userId
}

/** The fingerprint telling a retry from another request under the same key. */
function requestHash(currency: string, amount: string): string {
  return hash('sha256', JSON.stringify([currency, amount]), 'hex')
}

/** The routes, as a plugin to register under the API. */
export function btcRoutes(deps: BtcRoutesDeps): RoutePlugin {
  const { db, redis, cap, maxAgeMs } = deps
  const now = deps.now ?? Date.now
  // Concurrent orders are placed together, a batch per transaction (see placeBtcOrders).
  const place = createSerialBatcher<NewBtcOrder, PlaceOutcome>((orders) => placeBtcOrders(db, orders, cap))
  // The requests of one turn, and of the next quoteKeepMs, share one read of the cached
  // quote: the poller replaces it every 15 s, and a read per turn was a Redis call per order or two.
  const loadQuote = createTurnLoader(
    async (keys) => {
      const quote = await readBtcQuote(redis)
      return keys.map(() => quote)
    },
    { keepMs: deps.quoteKeepMs },
  )

  /** The earlier order under the key: a replay of the same request, or 409 for another one. */
  const replayOf = (order: BtcOrderRow, hash: string): BtcOrderRow => {
    if (order.request_hash === hash) return order
    throw new Conflict('this Idempotency-Key was used for a different order', { field: 'headers.idempotency-key' }, 'idempotency_key_reused')
  }

  return async (app) => {
    // amount must reach the route as written (see ../platform/http/json-body.ts).
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(app, { numberText: ['amount'] }))

    app.post(
      '/api/btc/orders',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'createBtcOrder',
          tags: ['btc'],
          summary: 'Buy BTC at the cached price',
          description:
            `The order is priced at the cached quote of its currency. ${ROUNDING_RULE} An amount buying less than ` +
            '1 satoshi is a 400 `amount_too_small` naming the smallest amount that buys one. A quote older than ' +
            '`BTC_PRICE_MAX_AGE_MS` (or none) is a 503 with `Retry-After`. All orders together may buy at most ' +
            '`BTC_CAP` BTC: an order that would cross it is a 409 `btc_cap_exceeded` whose `details.btc_available` ' +
            'is the BTC still available. With an `Idempotency-Key`, a retry returns the same order (same id and ' +
            'price; header `idempotent-replayed: true`) and the key with another body is a 409 `idempotency_key_reused`. ' +
            'Needs a user token: the order is its user\'s.',
          headers: IdempotencyHeaders,
          body: CreateBtcOrderBody,
          response: { 201: BtcOrderView, ...errors(400, 401, 403, 409, 429, 503) },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request)
        if (principal.userId === null) throw new Forbidden('placing a BTC order needs a user token')
        const userId = principal.userId
        const parsed = parseFiatAmount(request.body.amount)
        if (!parsed.ok) {
          throw new BadRequest('invalid request: body.amount', [{ field: 'body.amount', message: parsed.message }], 'validation_failed')
        }
        const { currency } = request.body
        const amount = parsed.value
        const key = request.headers['idempotency-key']
        if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
          throw new BadRequest('Idempotency-Key must be 1 to 255 visible ASCII characters', { field: 'headers.idempotency-key' })
        }
        const hash = key === undefined ? null : requestHash(currency, amount)
        /** A retry of an order placed earlier (at its own price): the same order, even without a fresh quote now. */
        const replayed = async () => {
          const earlier = key === undefined ? undefined : await findByIdempotencyKey(db, userId, key)
          if (!earlier) return undefined
          reply.header('idempotent-replayed', 'true')
          return orderView(replayOf(earlier, hash!))
        }

        const quote = (await loadQuote('quote'))[currency]
        const ageMs = quote ? now() - quote.fetchedAt.getTime() : Number.POSITIVE_INFINITY
        if (!quote || ageMs > maxAgeMs || ageMs < -QUOTE_CLOCK_SKEW_MS) {
          const retry = await replayed()
          if (retry) return retry
          throw new ServiceUnavailable(`no fresh BTC price in ${currency}: try again shortly`, QUOTE_RETRY_AFTER_SECONDS)
        }
        const bought = btcAmount(amount, quote.price)
        if (bought === ZERO_BTC) {
          const retry = await replayed()
          if (retry) return retry
          const smallest = smallestFiatAmount(quote.price)
          throw new BadRequest(
            `invalid request: body.amount buys less than 1 satoshi at ${quote.price} ${currency} per BTC`,
            [{ field: 'body.amount', message: `buys 0 BTC at the current price: the smallest amount is ${smallest} ${currency}` }],
            'amount_too_small',
          )
        }
        const result = await place({
          id: newBtcOrderId(userId, key ?? null),
          userId,
          currency,
          amount,
          btcPrice: quote.price,
          btcAmount: bought,
          priceSource: quote.source,
          priceFetchedAt: quote.fetchedAt,
          idempotencyKey: key ?? null,
          requestHash: hash,
        })
        if ('earlier' in result) {
          reply.header('idempotent-replayed', 'true')
          return orderView(replayOf(result.earlier, hash!))
        }
        if ('capExceeded' in result) {
          throw new Conflict(
            `this order would take the BTC bought past the cap of ${cap}; ${result.available} BTC is still available`,
            { btc_available: result.available },
            'btc_cap_exceeded',
          )
        }
        reply.code(201).header('location', `/api/btc/orders/${result.placed.id}`)
        return orderView(result.placed)
      },
    )

    app.get(
      '/api/btc/orders',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listBtcOrders',
          tags: ['btc'],
          summary: 'BTC orders, newest first, a keyset page at a time',
          description: "A user token lists its own user's orders; an admin token lists everyone's.",
          querystring: PageQuery,
          response: { 200: PageSchema(BtcOrderView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => {
        const page = await listBtcOrders(db, readerOf(principalOf(request)), pageRequest(request.query))
        return mapPage(page, orderView)
      },
    )

    app.get(
      '/api/btc/orders/:id',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getBtcOrder',
          tags: ['btc'],
          summary: 'One BTC order',
          description: "Another user's order is a 404, as if it did not exist; an admin token reads any.",
          params: BtcOrderIdParams,
          response: { 200: BtcOrderView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const order = await findBtcOrder(db, request.params.id, readerOf(principalOf(request)))
        if (!order) throw new NotFound(`BTC order ${request.params.id} does not exist`, { field: 'params.id' })
        return orderView(order)
      },
    )

    app.get(
      '/api/btc/price',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getBtcPrice',
          tags: ['btc'],
          summary: 'The cached BTC price in each currency, with its age',
          description: 'A currency the cache holds no valid quote for is null.',
          response: { 200: BtcPriceView, ...errors(401, 429) },
        },
      },
      async () => {
        const quote = await readBtcQuote(redis)
        const at = now()
        const view: BtcPriceView = { EUR: null, GBP: null, USD: null, max_age_ms: maxAgeMs }
        for (const currency of BTC_CURRENCIES) {
          const entry = quote[currency]
          if (!entry) continue
          const ageMs = Math.max(0, at - entry.fetchedAt.getTime())
          view[currency] = { price: entry.price, source: entry.source, fetched_at: entry.fetchedAt.toISOString(), age_ms: ageMs, stale: ageMs > maxAgeMs }
        }
        return view
      },
    )
  }
}
