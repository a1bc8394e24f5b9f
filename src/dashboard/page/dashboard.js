// The live dashboard: prices (candles and ticks from the tick stream), orders, The Eye's
// events and the services' heartbeats and reports, read from the API with an admin token.
// Plain browser JavaScript, no build step. Every text from the API goes in with
// textContent, never as HTML.
//
// The token comes from the link the demo prints (`#token=...`, never sent to a server),
// or the form; it is kept in sessionStorage for this tab only. Polls stay well under the
// API's rate limit (RATE_LIMIT_MAX, 60 a minute by default): about 50 requests a minute,
// and a 429 waits for its Retry-After.

const TOKEN_KEY = 'bourse.dashboard.token'
const $ = (selector) => document.querySelector(selector)

let token = sessionStorage.getItem(TOKEN_KEY)
const fromLink = new URLSearchParams(location.hash.slice(1)).get('token')
if (fromLink) {
  token = fromLink
  sessionStorage.setItem(TOKEN_KEY, token)
  history.replaceState(null, '', location.pathname + location.search)
}

/** The API said no to the token, or is not answering: one line at the top. */
function problem(text) {
  const el = $('#problem')
  el.textContent = text ?? ''
  el.hidden = !text
}

/** Thrown for a 429: the caller's timer waits `retryAfterMs` before its next try. */
class RateLimited extends Error {
  constructor(retryAfterMs) {
    super('rate limited')
    this.retryAfterMs = retryAfterMs
  }
}

/** GETs `path` as JSON with the admin token. */
async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` } })
  if (res.status === 429) throw new RateLimited(Number(res.headers.get('retry-after') ?? '5') * 1000)
  const body = await res.json().catch(() => undefined)
  if (res.status === 401 || res.status === 403) {
    stopAll()
    problem(`The API refused the token (${res.status}): sign in with an admin token.`)
    throw new Error('refused')
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body?.error?.message ?? ''}`)
  return body
}

// ---------------------------------------------------------------------------------------
// Small DOM helpers.

/** A table cell with `text` (and a class). */
function cell(text, className) {
  const td = document.createElement('td')
  td.textContent = text === null || text === undefined ? '–' : String(text)
  if (className) td.className = className
  return td
}

/** Replaces the rows of `table`'s body. */
function fillTable(table, rows) {
  const body = table.querySelector('tbody')
  body.replaceChildren(...rows)
}

function row(cells, className) {
  const tr = document.createElement('tr')
  if (className) tr.className = className
  tr.append(...cells)
  return tr
}

const shortId = (id) => String(id).slice(0, 8)
const clock = (iso) => (iso ? new Date(iso).toISOString().slice(11, 19) : '–')

// ---------------------------------------------------------------------------------------
// Timers: each panel polls on its own, and all stop when the token is refused.

const timers = new Set()
let streamAbort

/** Runs `task` now and then every `ms` (a number, or a function giving it each time). */
function every(ms, task) {
  let timer
  const run = async () => {
    let wait = typeof ms === 'function' ? ms() : ms
    try {
      await task()
    } catch (err) {
      if (err instanceof RateLimited) wait = Math.max(wait, err.retryAfterMs)
      else if (err.message !== 'refused') problem(`Could not read the API: ${err.message}`)
    }
    if (timers.has(run)) timer = setTimeout(run, wait)
  }
  timers.add(run)
  void run()
  return () => {
    timers.delete(run)
    clearTimeout(timer)
  }
}

function stopAll() {
  timers.clear()
  streamAbort?.abort()
}

// ---------------------------------------------------------------------------------------
// Prices: a chart per stock (1-minute candles and a line of every priced tick).

/** Seconds of today (UTC) at an `hhmmss` time; undefined for another form (the seed's `09:00`). */
function chartTime(hhmmss) {
  if (!/^\d{6}$/.test(hhmmss)) return undefined
  const now = new Date()
  const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) / 1000
  return day + Number(hhmmss.slice(0, 2)) * 3600 + Number(hhmmss.slice(2, 4)) * 60 + Number(hhmmss.slice(4, 6))
}

/** stock -> { el, candles, line, lastLine, lastCandle, ticks } */
const charts = new Map()

function chartFor(stock) {
  let chart = charts.get(stock)
  if (chart) return chart
  const el = document.createElement('div')
  el.className = 'chart'
  el.dataset.stock = stock
  el.dataset.ticks = '0'
  const title = document.createElement('h3')
  title.textContent = stock
  el.append(title)
  $('#charts').append(el)
  const lib = globalThis.LightweightCharts
  const view = lib.createChart(el, {
    autoSize: true,
    layout: { attributionLogo: true, fontSize: 11 },
    timeScale: { timeVisible: true, secondsVisible: true },
    rightPriceScale: { borderVisible: false },
  })
  const candles = view.addSeries(lib.CandlestickSeries, { upColor: '#1a7f37', downColor: '#b00020', wickUpColor: '#1a7f37', wickDownColor: '#b00020', borderVisible: false })
  const line = view.addSeries(lib.LineSeries, { color: '#0b57d0', lineWidth: 1, priceLineVisible: false })
  chart = { el, view, candles, line, lastLine: undefined, lastCandle: undefined, ticks: 0 }
  charts.set(stock, chart)
  return chart
}

/** Loads a stock's candles and its latest ticks into its chart. */
async function loadChart(stock) {
  const chart = chartFor(stock)
  const [candles, history] = await Promise.all([
    api(`/api/stocks/${encodeURIComponent(stock)}/candles?interval=1m`),
    api(`/api/stocks/${encodeURIComponent(stock)}?limit=200`),
  ])
  const bars = []
  for (const c of candles.items) {
    const time = chartTime(c.time)
    if (time !== undefined) bars.push({ time, open: c.open, high: c.high, low: c.low, close: c.close })
  }
  chart.candles.setData(bars)
  chart.lastCandle = bars.at(-1)
  // The newest entries first; the line needs one point per time, in time order.
  const points = new Map()
  for (const entry of history.items) {
    const time = chartTime(entry.time)
    if (time !== undefined && entry.price !== null && !points.has(time)) points.set(time, entry.price)
  }
  const line = [...points].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value }))
  chart.line.setData(line)
  chart.lastLine = line.at(-1)?.time
  chart.view.timeScale().fitContent()
}

/** One tick from the stream: the line and the current candle move on. */
function applyTick(stock, hhmmss, price) {
  const chart = chartFor(stock)
  chart.ticks++
  chart.el.dataset.ticks = String(chart.ticks)
  chart.el.dataset.lastTime = hhmmss
  chart.el.dataset.lastPrice = String(price)
  updateStockRow(stock, hhmmss, price)
  const time = chartTime(hhmmss)
  // Older than what the chart shows (a late or corrected tick): the next reload has it.
  if (time === undefined || (chart.lastLine !== undefined && time < chart.lastLine)) return
  chart.line.update({ time, value: price })
  chart.lastLine = time
  const bucket = time - (time % 60)
  const last = chart.lastCandle
  if (last && bucket < last.time) return
  const candle =
    last && last.time === bucket
      ? { time: bucket, open: last.open, high: Math.max(last.high, price), low: Math.min(last.low, price), close: price }
      : { time: bucket, open: price, high: price, low: price, close: price }
  chart.candles.update(candle)
  chart.lastCandle = candle
}

// ---------------------------------------------------------------------------------------
// The stock table.

const stockRows = new Map()

function updateStockRow(stock, time, price) {
  const tr = stockRows.get(stock)
  if (!tr) return
  tr.children[1].textContent = String(price)
  tr.children[2].textContent = time
}

async function loadStocks() {
  const { items } = await api('/api/stocks')
  const rows = items.map((s) => {
    const direction = s.change > 0 ? 'num up' : s.change < 0 ? 'num down' : 'num'
    const tr = row([cell(s.stock), cell(s.price, 'num'), cell(s.time), cell(s.change, direction), cell(s.performance, 'num'), cell(s.ticks, 'num')])
    tr.dataset.stock = s.stock
    stockRows.set(s.stock, tr)
    return tr
  })
  fillTable($('#stocks'), rows)
  for (const s of items) if (!charts.has(s.stock)) await loadChart(s.stock)
}

// ---------------------------------------------------------------------------------------
// The tick stream, read with fetch (an EventSource cannot send the token), resumed
// with Last-Event-ID after a drop.

let lastEventId

async function followTicks() {
  streamAbort = new AbortController()
  const headers = { authorization: `Bearer ${token}`, accept: 'text/event-stream' }
  if (lastEventId) headers['last-event-id'] = lastEventId
  const res = await fetch('/api/stocks/stream', { headers, signal: streamAbort.signal })
  if (!res.ok || !res.body) throw new Error(`tick stream: ${res.status}`)
  $('#live').textContent = 'live'
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      onStreamEvent(block)
    }
  }
}

function onStreamEvent(block) {
  let event = 'message'
  let data = ''
  for (const line of block.split('\n')) {
    if (line.startsWith('id:')) lastEventId = line.slice(3).trim()
    else if (line.startsWith('event:')) event = line.slice(6).trim()
    else if (line.startsWith('data:')) data += line.slice(5).trim()
  }
  if (event === 'gap') {
    // Ticks were missed (the stream no longer holds them): reload the charts.
    for (const stock of charts.keys()) void loadChart(stock).catch(() => {})
    return
  }
  if (event !== 'tick' || !data) return
  const tick = JSON.parse(data)
  tick.time.forEach((time, i) => {
    const price = tick.price[i]
    if (price !== '' && price !== null) applyTick(tick.stock, time, Number(price))
  })
}

function streamForever() {
  const loop = async () => {
    while (token && timers.size > 0) {
      try {
        await followTicks()
      } catch (err) {
        if (streamAbort?.signal.aborted) return
        $('#live').textContent = `stream interrupted (${err.message}), reconnecting`
      }
      await new Promise((resolve) => setTimeout(resolve, 2000))
    }
  }
  void loop()
}

// ---------------------------------------------------------------------------------------
// Orders and BTC orders.

const ORDER_STATES = ['received', 'verifying', 'filled', 'rejected']
let callbacksDelivered = null

async function loadOrders() {
  const { items } = await api('/api/orders?limit=200')
  const counts = new Map(ORDER_STATES.map((s) => [s, 0]))
  for (const o of items) counts.set(o.status, (counts.get(o.status) ?? 0) + 1)
  const flow = [...counts].map(([state, n]) => {
    const li = document.createElement('li')
    li.dataset.state = state
    const strong = document.createElement('strong')
    strong.textContent = String(n)
    li.append(`${state} `, strong)
    return li
  })
  const delivered = document.createElement('li')
  delivered.dataset.state = 'callbacks-delivered'
  const strong = document.createElement('strong')
  strong.textContent = callbacksDelivered === null ? '–' : String(callbacksDelivered)
  delivered.append('callbacks delivered ', strong)
  $('#order-flow').replaceChildren(...flow, delivered)
  fillTable(
    $('#order-table'),
    items.slice(0, 10).map((o) => {
      const tr = row([
        cell(shortId(o.order_id)),
        cell(o.user),
        cell(o.side),
        cell(o.stockname),
        cell(o.quantity, 'num'),
        cell(o.reason ? `${o.status} (${o.reason})` : o.status),
        cell(o.callback_url ? 'yes' : '–'),
      ])
      tr.dataset.order = o.order_id
      tr.dataset.status = o.status
      return tr
    }),
  )
}

async function loadBtc() {
  const [quote, orders] = await Promise.all([api('/api/btc/price'), api('/api/btc/orders?limit=10')])
  $('#btc-quote').textContent = ['EUR', 'GBP', 'USD']
    .map((c) => (quote[c] ? `1 BTC = ${quote[c].price} ${c} (${quote[c].source}, ${Math.round(quote[c].age_ms / 1000)} s${quote[c].stale ? ', stale' : ''})` : `${c}: no quote`))
    .join(' · ')
  fillTable(
    $('#btc-table'),
    orders.items.map((o) => row([cell(shortId(o.id)), cell(o.user_id), cell(`${o.amount} ${o.currency}`, 'num'), cell(o.btc_amount, 'num'), cell(o.btc_price, 'num'), cell(clock(o.created_at))])),
  )
}

// ---------------------------------------------------------------------------------------
// The Eye: events per second (from the events workers' heartbeats) and the latest errors.

/** [{ at, stored, rejected }] over the last 30 s. */
const eventSamples = []

function sampleEvents(instances) {
  const workers = instances.filter((i) => i.service === 'events-worker')
  const sum = (field) => workers.reduce((total, i) => total + (Number(i.status?.[field]) || 0), 0)
  const now = Date.now()
  eventSamples.push({ at: now, stored: sum('stored'), rejected: sum('rejected') })
  while (eventSamples.length > 2 && now - eventSamples[0].at > 30_000) eventSamples.shift()
  const first = eventSamples[0]
  const last = eventSamples.at(-1)
  const seconds = (last.at - first.at) / 1000
  $('#events-note').textContent = workers.length === 0 ? '(no events worker is running)' : ''
  if (workers.length === 0) {
    $('#events-rate').textContent = '–'
    $('#events-refused').textContent = '–'
  } else if (seconds > 0) {
    $('#events-rate').textContent = Math.max(0, (last.stored - first.stored) / seconds).toFixed(1)
    $('#events-refused').textContent = Math.max(0, (last.rejected - first.rejected) / seconds).toFixed(1)
  }
}

async function loadEventErrors() {
  const { items } = await api('/api/event-errors?limit=10')
  fillTable(
    $('#event-errors'),
    items.map((e) =>
      row([
        cell(clock(e.stored_at)),
        cell(e.category && e.name ? `${e.category} / ${e.name}` : '?'),
        cell(e.session_id ? shortId(e.session_id) : '–'),
        cell(e.reasons.map((r) => `${r.field} ${r.message}`).join('; ')),
      ]),
    ),
  )
}

// ---------------------------------------------------------------------------------------
// Services: every live instance with its heartbeat's age, the missing ones in red, reports.

/** The last status read: the instances' ages are shown again every second from it. */
let lastStatus
/**
 * How often the status is read: a third of the shortest heartbeat TTL (5 s for the
 * default 15 s), so a live instance has always beaten again before its age passes its TTL.
 */
let statusEveryMs = 5000

/**
 * The instances with their heartbeat's age, worked out now: an instance whose last beat is
 * older than its TTL turns red at once (its key is about to expire), without waiting for
 * the next read of the status.
 */
function renderInstances() {
  if (!lastStatus) return
  const now = Date.now()
  const rows = lastStatus.instances
    .slice()
    .sort((a, b) => a.service.localeCompare(b.service) || a.instance.localeCompare(b.instance))
    .map((i) => {
      const age = now - Date.parse(i.last_beat)
      const stale = age > i.ttl_ms
      const tr = row([cell(i.service), cell(i.instance), cell(`${Math.max(0, Math.round(age / 1000))} s ago`), cell(stale ? 'no heartbeat' : 'live')], stale ? 'stale' : 'live')
      tr.dataset.service = i.service
      tr.dataset.instance = i.instance
      tr.dataset.state = stale ? 'stale' : 'live'
      return tr
    })
  for (const service of lastStatus.missing) {
    const tr = row([cell(service), cell('–'), cell('–'), cell('missing')], 'missing')
    tr.dataset.service = service
    tr.dataset.state = 'missing'
    rows.push(tr)
  }
  fillTable($('#instances'), rows)
}

async function loadStatus() {
  const status = await api('/api/status?reports=15')
  lastStatus = status
  const shortestTtl = Math.min(...status.instances.map((i) => i.ttl_ms), 15_000)
  statusEveryMs = Math.max(1000, Math.min(5000, Math.floor(shortestTtl / 3)))
  renderInstances()
  fillTable(
    $('#reports'),
    status.reports.map((r) => {
      const tr = row([cell(clock(r.reported_at)), cell(r.level, `level-${r.level}`), cell(r.service), cell(r.status)])
      tr.dataset.level = r.level
      return tr
    }),
  )
  sampleEvents(status.instances)
  const senders = status.instances.filter((i) => i.service === 'callback-sender')
  callbacksDelivered = senders.length === 0 ? null : senders.reduce((total, i) => total + (Number(i.status?.delivered) || 0), 0)
}

// ---------------------------------------------------------------------------------------
// Start, sign in and out.

function start() {
  problem()
  if (!token) {
    $('#live').textContent = 'sign in with an admin token'
    return
  }
  every(() => statusEveryMs, loadStatus)
  every(1000, async () => renderInstances())
  every(5000, loadOrders)
  every(10_000, loadStocks)
  every(10_000, loadBtc)
  every(15_000, loadEventErrors)
  // Candles corrected by late ticks: reloaded once a minute.
  every(60_000, async () => {
    for (const stock of charts.keys()) await loadChart(stock)
  })
  streamForever()
}

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const value = $('#token').value.trim()
  if (!value) return
  stopAll()
  token = value
  sessionStorage.setItem(TOKEN_KEY, token)
  $('#token').value = ''
  start()
})

$('#token-forget').addEventListener('click', () => {
  stopAll()
  token = null
  sessionStorage.removeItem(TOKEN_KEY)
  $('#live').textContent = 'signed out'
})

start()
