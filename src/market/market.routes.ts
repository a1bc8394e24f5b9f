/**
 * The market data API: the stocks with their latest prices, a stock's history a keyset
 * page at a time, OHLC candles, and Server-Sent Events of the ticks as they are applied.
 * Every route needs a user or an admin token (an application's token is 403).
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import Type from 'typebox'
import { encodeCursor, readCursor } from '../platform/db/keyset.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import { principalOf, requireAuth } from '../platform/http/auth.ts'
import { BadRequest, ErrorResponseSchema, Forbidden, NotFound } from '../platform/http/errors.ts'
import { pageRequest } from '../platform/http/paging.ts'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { TaggedViews } from '../platform/tagged-views.ts'
import type { MarketDataRepository, TickStreamEntry } from './market-data.repository.ts'
import { CandleQuery, CandlesView, StockListView, StockPageQuery, StockParams, StockView, StreamHeaders, StreamQuery } from './market.schemas.ts'
import { stockNameProblem } from './tick.ts'
import { compareStreamIds, type TickStreamHub } from './tick-stream.ts'

/** What {@link marketRoutes} needs. */
export interface MarketRoutesDeps {
  market: MarketDataRepository
  hub: TickStreamHub
  /** The answers kept in memory while their data's generation is current. */
  views: TaggedViews
  /** How often a tick stream sends a keep-alive comment, in ms. @defaultValue 15000 */
  heartbeatMs?: number
  /**
   * Most bytes a tick stream may have waiting to be sent to its client (written but not
   * yet taken by the socket, plus live events held while a resumed stream catches up);
   * a client that falls further behind is disconnected. @defaultValue 1048576
   */
  maxBufferedBytes?: number
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

const STREAM_ID = /^\d{1,20}-\d{1,20}$/
/** Entries read per step of a resumed stream's catch-up. */
const CATCH_UP_BATCH = 200

/** 403 for an application's token: the market data is for users and admins. */
function assertReader(request: FastifyRequest): void {
  const principal = principalOf(request)
  if (!principal.admin && principal.userId === null) throw new Forbidden('market data needs a user token or an admin token')
}

function invalid(field: string, message: string): BadRequest {
  return new BadRequest(`invalid request: ${field}`, [{ field, message }], 'validation_failed')
}

/** The stock of a path, checked as a stock name (400) before it names a key. */
function stockOf(params: StockParams): string {
  const problem = stockNameProblem(params.stock)
  if (problem) throw invalid('params.stock', problem)
  return params.stock
}

/** Resolves when `res` can take more, or is closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done)
      resolve()
    }
    res.on('drain', done).on('close', done)
  })
}

const notFound = (stock: string) => new NotFound(`stock ${stock} has no history`, { field: 'params.stock' })

/** `payload` as the route's serializer writes it (the text a view keeps). */
function serialized(reply: FastifyReply, payload: unknown): string {
  const text = reply.serialize(payload)
  if (typeof text !== 'string') throw new TypeError('the route serializer answered bytes, not text')
  return text
}

/** Sends a view's JSON text as it is: it was serialized by the route's own serializer when built. */
function sendJson(reply: FastifyReply, text: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(text)
}

/** The routes, as a plugin to register under the API. */
export function marketRoutes(deps: MarketRoutesDeps): RoutePlugin {
  const { market, hub, views } = deps
  const heartbeatMs = deps.heartbeatMs ?? 15_000
  const maxBuffered = deps.maxBufferedBytes ?? 1024 * 1024

  return async (app) => {
    const streams = new Set<() => void>()
    app.addHook('preClose', async () => {
      for (const end of streams) end()
    })

    app.get(
      '/api/stocks',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listStocks',
          tags: ['market'],
          summary: 'Every stock with its latest price, its change since the first price, performance and tick count',
          description:
            'Sorted by stock. `price` is the last priced entry of the history (the price BuyStock and portfolios use) and ' +
            '`change` is `price - first_price`. Cached in Redis and never stale: a tick applied before the request is in ' +
            'the answer.',
          response: { 200: StockListView, ...errors(401, 403, 429) },
        },
      },
      async (request, reply) => {
        assertReader(request)
        const text = await views.read('stocks', market.summariesTag, async () => {
          const { gen, summaries } = await market.listSummaries()
          return { tag: gen, text: serialized(reply, { items: summaries }) }
        })
        return sendJson(reply, text!)
      },
    )

    app.get(
      '/api/stocks/stream',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'streamTicks',
          tags: ['market'],
          summary: 'Server-Sent Events: the ticks as they are applied',
          description:
            'Each event is `event: tick`, `id:` its stream id, and `data` the JSON `{"stock","time":[...],"price":[...]}` ' +
            'of the times one applied batch added or changed for that stock (a price `""` is "no data reported"); a ' +
            'replayed or unchanged tick is no event. Send the last `id` back as `Last-Event-ID` to resume after it. The ' +
            'stream keeps about `MARKET_STREAM_MAX_LEN` entries (one per stock and batch): a resume from an entry ' +
            'older than the oldest kept starts with an `event: gap` whose data names the oldest id kept. A client ' +
            'that does not read fast enough (more than `MARKET_STREAM_MAX_BUFFER_BYTES` waiting) is disconnected; ' +
            'it may reconnect with `Last-Event-ID`. Keep-alive comments come every 15 s.',
          querystring: StreamQuery,
          headers: StreamHeaders,
          produces: ['text/event-stream'],
          response: { 200: Type.String({ description: 'text/event-stream' }), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        assertReader(request)
        let wanted: Set<string> | undefined
        if (request.query.stocks !== undefined) {
          const names = request.query.stocks.split(',').map((s) => s.trim())
          for (const name of names) {
            const problem = stockNameProblem(name)
            if (problem) throw invalid('querystring.stocks', problem)
          }
          const known = new Set((await market.listSummaries()).summaries.map((s) => s.stock))
          const unknown = names.find((name) => !known.has(name))
          if (unknown !== undefined) throw new NotFound(`stock ${unknown} has no history`, { field: 'querystring.stocks' })
          wanted = new Set(names)
        }
        const lastEventId = request.headers['last-event-id']
        if (lastEventId !== undefined && !STREAM_ID.test(lastEventId)) {
          throw invalid('headers.last-event-id', 'must be an event id as sent in `id:` (`<ms>-<seq>`)')
        }
        const headers: OutgoingHttpHeaders = {
          ...(reply.getHeaders() as OutgoingHttpHeaders),
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        }
        const res: ServerResponse = reply.raw
        let closed = false
        // Entries are held until the headers are out and a resumed stream has caught up.
        let catchingUp = true
        let lastSent = lastEventId ?? '0-0'
        /** Live entries held while catching up, and their size. */
        const held: TickStreamEntry[] = []
        let heldBytes = 0
        let timer: NodeJS.Timeout | undefined
        const subscription: { unsubscribe?: () => void } = {}
        const finish = (drop = false) => {
          if (closed) return
          closed = true
          streams.delete(finish)
          clearInterval(timer)
          subscription.unsubscribe?.()
          if (drop) res.destroy()
          else res.end()
        }
        /** Too much waiting for this client: dropped, never buffered further. */
        const overflowing = () => res.writableLength + heldBytes > maxBuffered
        const send = (entry: TickStreamEntry) => {
          if (closed || compareStreamIds(entry.id, lastSent) <= 0) return
          lastSent = entry.id
          if (wanted && !wanted.has(entry.stock)) return
          res.write(`id: ${entry.id}\nevent: tick\ndata: ${entry.data}\n\n`)
          if (overflowing()) {
            request.log.info({ buffered: res.writableLength }, 'tick stream client too slow: disconnected')
            finish(true)
          }
        }
        const onEntry = (entry: TickStreamEntry) => {
          if (closed) return
          if (!catchingUp) return send(entry)
          held.push(entry)
          heldBytes += entry.data.length
          if (overflowing()) finish(true)
        }
        // Subscribed before the headers go: a client that has them misses no later tick.
        subscription.unsubscribe = (await hub.subscribe(onEntry)).unsubscribe
        if (closed) subscription.unsubscribe()
        reply.hijack()
        res.writeHead(200, headers)
        res.flushHeaders()
        res.on('close', () => finish())
        streams.add(finish)
        try {
          timer = setInterval(() => {
            if (!closed) res.write(': keep-alive\n\n')
          }, heartbeatMs)
          if (lastEventId !== undefined) {
            const oldest = await market.oldestStreamId()
            if (oldest !== undefined && compareStreamIds(lastEventId, oldest) < 0) {
              res.write(`event: gap\ndata: ${JSON.stringify({ oldest_id: oldest })}\n\n`)
            }
            // Catch up from the stream itself, at the client's pace: the next read waits
            // until the socket took what was written.
            for (;;) {
              const entries = await market.readStreamAfter(lastSent, CATCH_UP_BATCH)
              if (closed || entries.length === 0) break
              for (const entry of entries) send(entry)
              if (closed) break
              if (res.writableNeedDrain) await drained(res)
            }
          }
          catchingUp = false
          for (const entry of held.splice(0)) send(entry)
          heldBytes = 0
        } catch (err) {
          request.log.error({ err }, 'tick stream failed')
          finish()
        }
      },
    )

    app.get(
      '/api/stocks/:stock',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getStock',
          tags: ['market'],
          summary: "A stock's contract view (times, prices, performance), newest first, a keyset page at a time",
          description:
            'The entries of the history in the reverse of their order in the contract JSON (the newest applied first); ' +
            "a time's price corrected later stays at its place. `next_cursor` pages to older entries and stays valid " +
            'while ticks are applied. A page costs what lies between it and the newest entry; the first page is cached ' +
            'and never stale.',
          params: StockParams,
          querystring: StockPageQuery,
          response: { 200: StockView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        assertReader(request)
        const stock = stockOf(request.params)
        const { cursor, limit } = pageRequest(request.query)
        const key = readCursor(cursor, ['stock', 'before'], (k) => k.stock === stock && /^[1-9]\d{0,9}$/.test(k.before))
        const read = async () => {
          const page = await market.readPage(stock, key === undefined ? undefined : Number(key.before), limit)
          if (!page) return undefined
          const view = {
            stock,
            performance: page.performance,
            ticks: page.ticks,
            items: page.items,
            next_cursor: page.from > 0 && page.items.length > 0 ? encodeCursor([stock, String(page.from)]) : null,
          }
          return { tag: page.gen, text: serialized(reply, view) }
        }
        // The newest page is read most and is kept; older pages are read from Redis each time.
        const text = key === undefined ? await views.read(`stock:${stock}:${limit}`, market.stockTag(stock), read) : (await read())?.text
        if (text === undefined) throw notFound(stock)
        return sendJson(reply, text)
      },
    )

    app.get(
      '/api/stocks/:stock/candles',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getStockCandles',
          tags: ['market'],
          summary: 'OHLC candles of a stock',
          description:
            'Candles of `1m`, `5m` or `1h` from the bucket holding `from` to the one holding `to`, oldest first. ' +
            '`volume` is the number of ticks (priced times) in the bucket: the market reports no traded volume. ' +
            'Empty prices make no candle, and times that are not `hhmmss` (from a seeded contract) are in no candle. ' +
            'Candles are kept as ticks are applied, in the same atomic step, and exact for corrected prices.',
          params: StockParams,
          querystring: CandleQuery,
          response: { 200: CandlesView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        assertReader(request)
        const stock = stockOf(request.params)
        const { interval, from = '000000', to = '235959' } = request.query
        if (from > to) throw invalid('querystring.from', `must not be after to (${to})`)
        const text = await views.read(`candles:${stock}:${interval}:${from}:${to}`, market.stockTag(stock), async () => {
          const read = await market.readCandles(stock, interval, from, to)
          return read && { tag: read.gen, text: serialized(reply, { stock, interval, items: read.candles }) }
        })
        if (text === undefined) throw notFound(stock)
        return sendJson(reply, text)
      },
    )
  }
}
