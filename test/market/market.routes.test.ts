/**
 * The market data API over HTTP on the real Redis, PostgreSQL and Kafka: the stock list,
 * a stock's pages, candles, and the tick stream; every refusal (400 naming its field, 401,
 * 403 for an application's token, 404), reads after writes never served from a stale
 * cache, Last-Event-ID resume, and a slow stream client dropped.
 */
import assert from 'node:assert/strict'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createApp } from '../../src/events/apps.repository.ts'
import { createStockHistoryRepository, type StockHistoryRepository } from '../../src/market/index.ts'
import type { Tick } from '../../src/market/tick.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'
import { waitFor } from '../helpers/infra.ts'

let api: TradingApi
let history: StockHistoryRepository
let appToken: string
let address: string

before(async () => {
  api = await openTradingApi()
  history = createStockHistoryRepository(api.redis, { materializeIntervalMs: 0 })
  appToken = (await createApp(api.testDb.db, 'market-test-app')).token
  address = await api.app.listen({ port: 0, host: '127.0.0.1' })
})
after(async () => {
  await api.close()
})

interface ErrorBody {
  error: { code: string; message: string; details?: unknown }
}

/** A GET with `token` (user1's by default; null for none). */
function get(url: string, token: string | null = api.tokens.user1) {
  return api.app.inject({ method: 'GET', url, headers: token === null ? {} : api.auth(token) })
}

/** The field a 400 names. */
function fieldOf(res: { json: () => unknown }): string {
  const { details } = (res.json() as ErrorBody).error
  if (Array.isArray(details)) return (details[0] as { field: string }).field
  return (details as { field: string }).field
}

/** hhmmss of second `s` of the day. */
const hhmmss = (s: number) => [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join('')

describe('auth and refusals', () => {
  const routes = ['/api/stocks', '/api/stocks/stock1', '/api/stocks/stock1/candles?interval=1m']
  it('every route needs a user or an admin token', async () => {
    for (const url of routes) {
      assert.equal((await get(url, null)).statusCode, 401, url)
      assert.equal((await get(url, 'not-a-token')).statusCode, 401, url)
      assert.equal((await get(url, appToken)).statusCode, 403, url)
      assert.equal((await get(url, api.tokens.user1)).statusCode, 200, url)
      assert.equal((await get(url, api.tokens.admin)).statusCode, 200, url)
    }
    const stream = await fetch(`${address}/api/stocks/stream`)
    assert.equal(stream.status, 401)
    assert.equal((await fetch(`${address}/api/stocks/stream`, { headers: api.auth(appToken) })).status, 403)
  })

  it('400 names the field: bad stock, cursor, limit, interval, from, to, from after to, stocks, Last-Event-ID', async () => {
    const cases: Array<[string, string]> = [
      ['/api/stocks/bad%20name', 'params.stock'],
      ['/api/stocks/user1', 'params.stock'],
      ['/api/stocks/stock1?cursor=garbage', 'querystring.cursor'],
      ['/api/stocks/stock1?limit=0', 'querystring.limit'],
      ['/api/stocks/stock1?limit=201', 'querystring.limit'],
      ['/api/stocks/stock1?bogus=1', 'querystring.bogus'],
      ['/api/stocks/stock1/candles', 'querystring.interval'],
      ['/api/stocks/stock1/candles?interval=2m', 'querystring.interval'],
      ['/api/stocks/stock1/candles?interval=1m&from=9am', 'querystring.from'],
      ['/api/stocks/stock1/candles?interval=1m&to=240000', 'querystring.to'],
      ['/api/stocks/stock1/candles?interval=1m&from=100000&to=090000', 'querystring.from'],
      ['/api/stocks/bad%20name/candles?interval=1m', 'params.stock'],
    ]
    for (const [url, field] of cases) {
      const res = await get(url)
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`)
      assert.equal(fieldOf(res), field, url)
    }
    // A cursor of another stock's list is not one of this list's.
    const page = (await get('/api/stocks/stock1?limit=1')).json() as { next_cursor: string }
    const foreign = await get(`/api/stocks/stock2?cursor=${page.next_cursor}`)
    assert.equal(foreign.statusCode, 400)
    assert.equal(fieldOf(foreign), 'querystring.cursor')

    const badStocks = await fetch(`${address}/api/stocks/stream?stocks=stock1,bad%20name`, { headers: api.auth(api.tokens.user1) })
    assert.equal(badStocks.status, 400)
    const badStocksBody = (await badStocks.json()) as ErrorBody
    assert.equal(fieldOf({ json: () => badStocksBody }), 'querystring.stocks')
    const badId = await fetch(`${address}/api/stocks/stream`, { headers: { ...api.auth(api.tokens.user1), 'last-event-id': 'yesterday' } })
    assert.equal(badId.status, 400)
    const badIdBody = (await badId.json()) as ErrorBody
    assert.equal(fieldOf({ json: () => badIdBody }), 'headers.last-event-id')
  })

  it('404 for an unknown stock, on every route', async () => {
    for (const url of ['/api/stocks/ghost', '/api/stocks/ghost/candles?interval=1h']) {
      const res = await get(url)
      assert.equal(res.statusCode, 404, url)
      assert.equal((res.json() as ErrorBody).error.code, 'not_found')
    }
    const stream = await fetch(`${address}/api/stocks/stream?stocks=stock1,ghost`, { headers: api.auth(api.tokens.user1) })
    assert.equal(stream.status, 404)
    assert.deepEqual(((await stream.json()) as ErrorBody).error.details, { field: 'querystring.stocks' })
  })
})

describe('reads', () => {
  it('GET /api/stocks: latest price and time, change since the first price, performance, tick count', async () => {
    await history.applyTicks([
      { stock: 'stock1', time: '090031', price: 1041.3 },
      { stock: 'stock1', time: '090041', price: null },
    ])
    const res = await get('/api/stocks')
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as { items: Array<Record<string, unknown>> }
    assert.deepEqual(body.items[0], { stock: 'stock1', price: 1041.3, time: '090031', first_price: 500, change: 541.3, performance: 0, ticks: 5 })
    assert.deepEqual(body.items[1], { stock: 'stock2', price: 12.5, time: '09:01', first_price: 6.25, change: 6.25, performance: 0, ticks: 3 })
  })

  it('GET /api/stocks/{stock}: newest first, keyset pages that stay put while ticks are applied', async () => {
    const ticks: Tick[] = []
    for (let s = 0; s < 250; s++) ticks.push({ stock: 'paged', time: hhmmss(36_000 + s), price: s % 5 === 0 ? null : s })
    await history.seedStock('paged', { id: 9, time: [], price: [], performance: 0.5 })
    await history.applyTicks(ticks)
    const seen: Array<{ time: string; price: number | null }> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await get(`/api/stocks/paged?limit=100${cursor ? `&cursor=${cursor}` : ''}`)
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { stock: string; performance: number; ticks: number; items: typeof seen; next_cursor: string | null }
      assert.equal(page.performance, 0.5)
      assert.equal(page.ticks, 250 + (pages > 0 ? 1 : 0))
      seen.push(...page.items)
      cursor = page.next_cursor
      // A tick applied between two pages does not move the pages after it.
      if (pages++ === 0) await history.applyTicks([{ stock: 'paged', time: hhmmss(40_000), price: 1 }])
    } while (cursor)
    assert.equal(pages, 3)
    assert.deepEqual(seen, ticks.map((t) => ({ time: t.time, price: t.price })).reverse())
    const defaults = (await get('/api/stocks/paged')).json() as { items: unknown[] }
    assert.equal(defaults.items.length, 50, 'the default page length')
  })

  it('GET /api/stocks/{stock}/candles: exact OHLC, volume = ticks, within from and to', async () => {
    await history.applyTicks([
      { stock: 'candled', time: '090000', price: 10 },
      { stock: 'candled', time: '090030', price: 12 },
      { stock: 'candled', time: '090130', price: null },
      { stock: 'candled', time: '090459', price: 8 },
      { stock: 'candled', time: '100001', price: 20 },
    ])
    await history.applyTicks([{ stock: 'candled', time: '090015', price: 30 }]) // out of order
    await history.applyTicks([{ stock: 'candled', time: '090030', price: 11 }]) // a correction
    const candles = async (query: string) => {
      const res = await get(`/api/stocks/candled/candles?${query}`)
      assert.equal(res.statusCode, 200, res.body)
      return (res.json() as { items: unknown[] }).items
    }
    assert.deepEqual(await candles('interval=1m'), [
      { time: '090000', open: 10, high: 30, low: 10, close: 11, volume: 3 },
      { time: '090400', open: 8, high: 8, low: 8, close: 8, volume: 1 },
      { time: '100000', open: 20, high: 20, low: 20, close: 20, volume: 1 },
    ])
    assert.deepEqual(await candles('interval=5m&from=090000&to=095959'), [{ time: '090000', open: 10, high: 30, low: 8, close: 8, volume: 4 }])
    assert.deepEqual(await candles('interval=1h&from=093000'), [
      { time: '090000', open: 10, high: 30, low: 8, close: 8, volume: 4 },
      { time: '100000', open: 20, high: 20, low: 20, close: 20, volume: 1 },
    ])
    assert.deepEqual(await candles('interval=1m&from=090100&to=090359'), [])
  })
})

describe('the cache', () => {
  it('a read after a write never returns the old value', async () => {
    for (let i = 0; i < 30; i++) {
      // Read (and cache) the views, write, read again: the write is always seen.
      await get('/api/stocks')
      await get('/api/stocks/cached?limit=5')
      await get('/api/stocks/cached/candles?interval=1h')
      const price = 100 + i
      await history.applyTicks([{ stock: 'cached', time: hhmmss(50_000 + i), price }])
      const list = (await get('/api/stocks')).json() as { items: Array<{ stock: string; price: number; ticks: number }> }
      const entry = list.items.find((s) => s.stock === 'cached')
      assert.equal(entry?.price, price, `list after write ${i}`)
      assert.equal(entry?.ticks, i + 1)
      const page = (await get('/api/stocks/cached?limit=5')).json() as { items: Array<{ price: number }>; ticks: number }
      assert.equal(page.items[0]?.price, price, `page after write ${i}`)
      assert.equal(page.ticks, i + 1)
      const candles = (await get('/api/stocks/cached/candles?interval=1h')).json() as { items: Array<{ close: number; volume: number }> }
      assert.equal(candles.items.at(-1)?.close, price, `candles after write ${i}`)
      assert.equal(candles.items.reduce((sum, c) => sum + c.volume, 0), i + 1)
    }
    assert.ok(await api.redis.exists('bourse:cache:stocks'), 'the list is cached')
  })

  it('serves the view kept in memory while nothing changes; a stored performance is a change too', async () => {
    const first = (await get('/api/stocks')).body
    // The Redis copy changed behind the API's back is not read: the memory view is current.
    // (The Redis copy itself, shared by API instances, is tested with the repository.)
    const cached = await api.redis.get('bourse:cache:stocks')
    assert.ok(cached)
    await api.redis.set('bourse:cache:stocks', `${cached.slice(0, cached.indexOf('\n'))}\n[]`)
    assert.equal((await get('/api/stocks')).body, first, 'served from memory')
    await history.applyTicks([{ stock: 'stock2', time: '120000', price: 99 }])
    const fresh = (await get('/api/stocks')).json() as { items: Array<{ stock: string; price: number }> }
    assert.equal(fresh.items.find((s) => s.stock === 'stock2')?.price, 99)
    // A stock's page: a performance stored raises the stock's generation.
    await get('/api/stocks/stock2?limit=2')
    const { completePerformance } = history
    await api.redis.hset('bourse:h:stock2:m', 'lo', 'me')
    assert.ok(await completePerformance('stock2', 'me', 0.25, 1))
    const page = (await get('/api/stocks/stock2?limit=2')).json() as { performance: number }
    assert.equal(page.performance, 0.25)
  })
})

/** An SSE client on a real socket: its events as they come. */
interface SseClient {
  events: Array<{ id?: string; event?: string; data: string }>
  response: IncomingMessage
  close(): void
}

async function openStream(path: string, headers: Record<string, string> = {}, base = address): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers: { ...api.auth(api.tokens.user1), ...headers } }, (response) => {
      const client: SseClient = { events: [], response, close: () => req.destroy() }
      let buffer = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        buffer += chunk
        let at: number
        while ((at = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, at)
          buffer = buffer.slice(at + 2)
          const event: { id?: string; event?: string; data: string } = { data: '' }
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) event.id = line.slice(4)
            else if (line.startsWith('event: ')) event.event = line.slice(7)
            else if (line.startsWith('data: ')) event.data = line.slice(6)
          }
          if (event.event) client.events.push(event)
        }
      })
      resolve(client)
    })
    req.on('error', reject)
    req.end()
  })
}

const ticksOf = (client: SseClient) =>
  client.events.filter((e) => e.event === 'tick').map((e) => JSON.parse(e.data) as { stock: string; time: string[]; price: Array<number | ''> })

describe('the tick stream', () => {
  it('sends the ticks as they are applied, only of the stocks asked for', async () => {
    const client = await openStream('/api/stocks/stream?stocks=stock1')
    assert.equal(client.response.statusCode, 200)
    assert.match(String(client.response.headers['content-type']), /^text\/event-stream/)
    await history.applyTicks([
      { stock: 'stock2', time: '130000', price: 5 },
      { stock: 'stock1', time: '130000', price: 7 },
      { stock: 'stock1', time: '130001', price: null },
    ])
    await waitFor(() => ticksOf(client).length >= 1, { what: 'a tick event' })
    assert.deepEqual(ticksOf(client), [{ stock: 'stock1', time: ['130000', '130001'], price: [7, ''] }])
    client.close()
  })

  it('resumes after Last-Event-ID with every later event once, in order, then live', async () => {
    const first = await openStream('/api/stocks/stream?stocks=stock1,stock2')
    for (let i = 0; i < 5; i++) await history.applyTicks([{ stock: i % 2 ? 'stock1' : 'stock2', time: hhmmss(50_400 + i), price: i + 1 }])
    await waitFor(() => ticksOf(first).length === 5, { what: 'five events' })
    first.close()
    const ids = first.events.map((e) => e.id!)
    // Missed while disconnected:
    for (let i = 5; i < 8; i++) await history.applyTicks([{ stock: 'stock1', time: hhmmss(50_400 + i), price: i + 1 }])
    const resumed = await openStream('/api/stocks/stream?stocks=stock1,stock2', { 'last-event-id': ids[1]! })
    await history.applyTicks([{ stock: 'stock2', time: hhmmss(50_500), price: 100 }])
    await waitFor(() => ticksOf(resumed).length === 7, { what: 'the missed events and the live one' })
    assert.deepEqual(
      ticksOf(resumed).map((t) => t.price[0]),
      [3, 4, 5, 6, 7, 8, 100],
    )
    assert.deepEqual(resumed.events.slice(0, 3).map((e) => e.id), ids.slice(2))
    assert.equal(new Set(resumed.events.map((e) => e.id)).size, 7, 'no event twice')
    resumed.close()
  })

  it('a resume from before the oldest entry kept starts with a gap event', async () => {
    const client = await openStream('/api/stocks/stream', { 'last-event-id': '1-0' })
    await waitFor(() => client.events.length > 0, { what: 'the gap event' })
    assert.equal(client.events[0]?.event, 'gap')
    const oldest = (await api.redis.xrange('bourse:ticks', '-', '+', 'COUNT', 1))[0]?.[0]
    assert.deepEqual(JSON.parse(client.events[0]!.data), { oldest_id: oldest })
    client.close()
  })
})

describe('a slow stream client', () => {
  let slow: TradingApi
  let slowAddress: string
  before(async () => {
    slow = await openTradingApi({ MARKET_STREAM_MAX_BUFFER_BYTES: '65536', RATE_LIMIT_MAX: '5' })
    slowAddress = await slow.app.listen({ port: 0, host: '127.0.0.1' })
  })
  after(async () => {
    await slow.close()
  })

  it('is disconnected once more than MARKET_STREAM_MAX_BUFFER_BYTES waits for it', async () => {
    const url = new URL(slowAddress)
    const socket = connect(Number(url.port), url.hostname)
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
    socket.write(`GET /api/stocks/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${slow.tokens.user1}\r\n\r\n`)
    let received = 0
    socket.once('data', (chunk: Buffer) => {
      received += chunk.length
      socket.pause() // and never read again
    })
    const connections = () => new Promise<number>((resolve, reject) => slow.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
    await waitFor(async () => received > 0, { what: 'the stream headers' })
    const writer = createStockHistoryRepository(slow.redis, { materializeIntervalMs: 60_000, tickStreamMaxLen: 200 })
    let batches = 0
    // Each batch is one event of about 20 kB; the kernel's socket buffers take some MB first.
    while ((await connections()) > 0) {
      assert.ok(batches < 3000, 'the slow client was never disconnected')
      const stock = `flood${batches % 40}`
      const start = Math.floor(batches / 40) * 1000
      const ticks: Tick[] = []
      for (let s = 0; s < 1000; s++) ticks.push({ stock, time: hhmmss(start + s), price: 1000 + s + 0.125 })
      await writer.applyTicks(ticks)
      batches++
    }
    // What the client gets when it reads again ends with the connection closed, short of the last events.
    let tail = ''
    socket.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString('latin1')).slice(-50_000)
    })
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.resume()
    await ended
    assert.ok(!tail.includes(`"stock":"flood${(batches - 1) % 40}","time":["${hhmmss(Math.floor((batches - 1) / 40) * 1000)}"`), 'the last events were not sent')
    // The API still serves others; its rate limit applies to the market routes too.
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      statuses.push((await slow.app.inject({ method: 'GET', url: '/api/stocks', headers: slow.auth(slow.tokens.user2) })).statusCode)
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429])
  })
})
