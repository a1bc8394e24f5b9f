/**
 * The trading API: BuyStock, orders (with their status stream), portfolios, transactions
 * and callback dead letters. Every route needs a bearer token acting for the user named.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { assertActsFor, assertAdmin, type Principal, principalOf, requireAuth } from '../platform/http/auth.ts'
import type { Db } from '../database.ts'
import type { OrderRow, WebhookDeliveryRow } from './db/tables.ts'
import { mapPage } from '../platform/db/keyset.ts'
import { ErrorResponseSchema, Forbidden, NotFound } from '../platform/http/errors.ts'
import { PageQuery, pageQueryFields, pageRequest, PageSchema } from '../platform/http/paging.ts'
import type { Redis } from '../platform/redis.ts'
import { findUser, listHoldings, listTransactions } from './accounts.repository.ts'
import type { BuyStockService, PriceReader } from './buy-stock.service.ts'
import { decimalNumber, fromUnits, toUnits } from './money.ts'
import type { OrderStatusHub } from './order-events.ts'
import { isFinal, orderView, statusUrl, transactionView } from './order-view.ts'
import type { OrderService } from './orders.service.ts'
import { findOrder, listOrders } from './orders.repository.ts'
import {
  BuyStockBody,
  BuyStockDecision,
  CreateOrderBody,
  OrderAccepted,
  OrderView,
  Portfolio,
  TransactionView,
  UserName,
} from './trading.schemas.ts'
import { listDeadLetters, replayDeadLetter } from './webhooks/webhook.repository.ts'

/** What the trading routes need. */
export interface TradingRoutesDeps {
  db: Db
  redis: Redis
  buyStock: BuyStockService
  orders: OrderService
  prices: PriceReader
  hub: OrderStatusHub
  /** The database schema (its NOTIFY channel wakes the callback sender on a replay). */
  schema: string
  /** How long a replayed callback is retried (ms). */
  callbackRetryForMs: number
  /** How often an order's event stream sends a keep-alive and re-reads the order (ms). @defaultValue 15000 */
  heartbeatMs?: number
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))
const OrderIdParams = Type.Object({ id: Type.String({ format: 'uuid' }) })
const UserParams = Type.Object({ user: UserName })
/** A page of a list an admin may narrow to one user (a user token lists its own). */
const UserPageQuery = Type.Object({ user: Type.Optional(UserName), ...pageQueryFields }, { additionalProperties: false })
const DeadLetter = Type.Object({
  id: Type.String({ description: 'The `webhook-id` of every attempt' }),
  order_id: Type.String({ format: 'uuid' }),
  user: Type.String(),
  url: Type.String(),
  event_type: Type.String(),
  payload: Type.Unknown({ description: 'The body that was sent' }),
  attempts: Type.Integer(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  last_status: Type.Union([Type.Integer(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
})

function deadLetterView(row: WebhookDeliveryRow) {
  return {
    id: row.id,
    order_id: row.order_id,
    user: row.user_id,
    url: row.url,
    event_type: row.event_type,
    payload: JSON.parse(row.payload) as unknown,
    attempts: row.attempts,
    last_error: row.last_error,
    last_status: row.last_status,
    created_at: row.created_at.toISOString(),
  }
}

/**
 * Whose records a list shows: the `user` asked for, else the token's own user. Without
 * either, only an admin may list everyone's (an application token may not).
 */
function listedUser(principal: Principal, asked: string | undefined): string | undefined {
  const user = asked ?? principal.userId ?? undefined
  if (user === undefined) assertAdmin(principal)
  else assertActsFor(principal, user)
  return user
}

/** The routes, as a plugin to register under the API. */
export function tradingRoutes(deps: TradingRoutesDeps): FastifyPluginAsyncTypebox {
  const { db } = deps
  const heartbeatMs = deps.heartbeatMs ?? 15_000

  /** The order, if the caller may see it (404 otherwise, 403 for another user's order). */
  const visibleOrder = async (principal: Principal, id: string): Promise<OrderRow> => {
    const order = await findOrder(db, id)
    if (!order) throw new NotFound(`order ${id} does not exist`, { field: 'params.id' })
    assertActsFor(principal, order.user_id)
    return order
  }

  /** The user a `/api/users/:user` route names, if the caller may act for them (404 if there is none). */
  const actedForUser = async (principal: Principal, userId: string) => {
    assertActsFor(principal, userId)
    const user = await findUser(db, userId)
    if (!user) throw new NotFound(`user ${userId} does not exist`, { field: 'params.user' })
    return user
  }

  return async (app) => {
    // Event streams are ended when the server closes; otherwise they would hold it open.
    const streams = new Set<() => void>()
    app.addHook('preClose', async () => {
      for (const end of streams) end()
    })

    app.post(
      '/api/buy-stock',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'checkBuyStock',
          tags: ['trading'],
          summary: 'BuyStock: may this user buy this many shares at the latest price?',
          description: "A check only: reads the user's credit and the stock's latest price from Redis; nothing is debited.",
          body: BuyStockBody,
          response: { 200: BuyStockDecision, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        assertActsFor(principalOf(request), request.body.user)
        return deps.buyStock.check(request.body)
      },
    )

    app.post(
      '/api/orders',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'placeOrder',
          tags: ['orders'],
          summary: 'Place an order: acknowledged at once, verified and executed in the background',
          description:
            'Answers 202 as soon as the order is durably queued. The result comes to `callback_url` (Standard Webhooks ' +
            'signed), at `status_url`, and on `status_url`/events (Server-Sent Events). With an `Idempotency-Key` header ' +
            'a retry returns the same order.',
          body: CreateOrderBody,
          headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ description: 'Makes retries safe' })) }),
          response: { 202: OrderAccepted, ...errors(400, 401, 403, 404, 409, 429, 503) },
        },
      },
      async (request, reply) => {
        assertActsFor(principalOf(request), request.body.user)
        const { order, replayed } = await deps.orders.place(request.body, request.headers['idempotency-key'])
        reply.code(202).header('location', statusUrl(order.id))
        if (replayed) reply.header('idempotent-replayed', 'true')
        return { order_id: order.id, status: order.status, status_url: statusUrl(order.id) }
      },
    )

    app.get(
      '/api/orders/:id',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getOrder',
          tags: ['orders'],
          summary: 'An order and its current status',
          params: OrderIdParams,
          response: { 200: OrderView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => orderView(await visibleOrder(principalOf(request), request.params.id)),
    )

    app.get(
      '/api/orders/:id/events',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'streamOrderEvents',
          tags: ['orders'],
          summary: "Server-Sent Events: the order's status now and at each change, until it is final",
          description:
            'Each event is `event: status` with the order as JSON `data`; the stream ends after the final state, or ' +
            'within `AUTH_CACHE_MS` of its token being revoked.',
          params: OrderIdParams,
          produces: ['text/event-stream'],
          response: { 200: Type.String({ description: 'text/event-stream' }), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request)
        await visibleOrder(principal, request.params.id)
        // Once hijacked, Fastify no longer writes the headers its hooks set on the reply (the
        // security headers, x-ratelimit-*), so they are written here with the stream's own.
        const headers: OutgoingHttpHeaders = {
          ...(reply.getHeaders() as OutgoingHttpHeaders),
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        }
        reply.hijack()
        const res = reply.raw
        res.writeHead(200, headers)
        let lastSent = ''
        let closed = false
        let unsubscribe: (() => Promise<void>) | undefined
        let timer: NodeJS.Timeout | undefined
        const finish = () => {
          if (closed) return
          closed = true
          streams.delete(finish)
          clearInterval(timer)
          void unsubscribe?.()
          res.end()
        }
        const send = (view: OrderView) => {
          if (closed) return
          const key = `${view.status}:${view.updated_at}`
          // A repeated view (a publish racing the read) is skipped; after a final one the stream is closed.
          if (key === lastSent) return
          lastSent = key
          res.write(`event: status\nid: ${view.status}\ndata: ${JSON.stringify(view)}\n\n`)
          if (isFinal(view.status)) finish()
        }
        const reread = async () => {
          const order = await findOrder(db, request.params.id)
          if (order) send(orderView(order))
        }
        res.on('close', finish)
        streams.add(finish)
        try {
          // Subscribe first, then read: a change in between is seen (at worst twice, and skipped).
          unsubscribe = await deps.hub.subscribe(request.params.id, send)
          await reread()
          // A heartbeat keeps proxies from closing the stream; the re-read covers a status
          // published while no subscriber was there (a verifier that died before publishing).
          timer = setInterval(() => {
            if (closed) return
            res.write(': keep-alive\n\n')
            reread().catch((err: unknown) => request.log.warn({ err }, 'order stream re-read failed'))
          }, heartbeatMs)
        } catch (err) {
          request.log.error({ err }, 'order stream failed')
          finish()
        }
      },
    )

    app.get(
      '/api/orders',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listOrders',
          tags: ['orders'],
          summary: 'Orders, newest first, a keyset page at a time',
          description: "A user token sees its own user's orders; an admin token sees every order, or one user's with `user`.",
          querystring: UserPageQuery,
          response: { 200: PageSchema(OrderView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => {
        const user = listedUser(principalOf(request), request.query.user)
        return mapPage(await listOrders(db, { userId: user }, pageRequest(request.query)), orderView)
      },
    )

    app.get(
      '/api/users/:user',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getPortfolio',
          tags: ['accounts'],
          summary: 'A portfolio: credit and holdings valued at the latest prices',
          params: UserParams,
          response: { 200: Portfolio, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const user = await actedForUser(principalOf(request), request.params.user)
        const holdings = await listHoldings(db, user.id)
        const prices = await deps.prices.readLatestPrices(holdings.map((h) => h.stock))
        let total = 0n
        const items = holdings.map((h, i) => {
          const price = prices[i] ?? null
          const value = price === null ? null : toUnits(price) * BigInt(h.quantity)
          if (value !== null) total += value
          return {
            stockname: h.stock,
            quantity: Number(h.quantity),
            cost: decimalNumber(h.cost),
            price,
            value: value === null ? null : fromUnits(value),
          }
        })
        return { user: user.id, credit: decimalNumber(user.credit), holdings: items, holdings_value: fromUnits(total) }
      },
    )

    app.get(
      '/api/users/:user/transactions',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listTransactions',
          tags: ['accounts'],
          summary: "A user's transactions, newest first",
          params: UserParams,
          querystring: PageQuery,
          response: { 200: PageSchema(TransactionView), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        await actedForUser(principalOf(request), request.params.user)
        return mapPage(await listTransactions(db, request.params.user, pageRequest(request.query)), transactionView)
      },
    )

    app.get(
      '/api/users/:user/webhook-secret',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getWebhookSecret',
          tags: ['accounts'],
          summary: "The secret signing this user's callbacks (Standard Webhooks, `whsec_...`)",
          params: UserParams,
          response: { 200: Type.Object({ secret: Type.String() }), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const user = await actedForUser(principalOf(request), request.params.user)
        return { secret: user.webhook_secret }
      },
    )

    app.get(
      '/api/webhooks/dead-letters',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listDeadLetters',
          tags: ['callbacks'],
          summary: 'Callbacks that could not be delivered within the retry window, newest first',
          querystring: UserPageQuery,
          response: { 200: PageSchema(DeadLetter), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => {
        const user = listedUser(principalOf(request), request.query.user)
        return mapPage(await listDeadLetters(db, { userId: user }, pageRequest(request.query)), deadLetterView)
      },
    )

    app.post(
      '/api/webhooks/dead-letters/:id/replay',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'replayDeadLetter',
          tags: ['callbacks'],
          summary: 'Send a dead-lettered callback again (same webhook-id)',
          params: Type.Object({ id: Type.String({ pattern: '^msg_[0-9a-f]{32}$' }) }),
          response: { 202: Type.Object({ id: Type.String(), status: Type.Literal('pending') }), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request)
        // Only the owning user or an admin: a token of no user (an application's) replays nothing.
        const owner = principal.admin ? undefined : principal.userId
        if (owner === null) throw new Forbidden('only the owning user or an admin may replay a callback')
        const row = await replayDeadLetter(db, request.params.id, {
          retryForMs: deps.callbackRetryForMs,
          schema: deps.schema,
          ...(owner !== undefined && { userId: owner }),
        })
        if (!row) throw new NotFound(`no dead letter ${request.params.id}`, { field: 'params.id' })
        reply.code(202)
        return { id: row.id, status: 'pending' as const }
      },
    )
  }
}
