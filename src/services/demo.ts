/**
 * `bourse demo`: the whole system on this machine. Starts what infrastructure is
 * missing, loads the sample users and stocks, sends the sample CSV into Kafka, runs the
 * price updater, the performance service, the trading services (API, verifier, callback
 * sender and the simulated verification API), the events worker, the product alerts
 * (scheduler, worker, the simulated eBay and a local mail sink) and the BTC price poller
 * with its simulated providers as their own processes
 * (exactly as `docker compose up` runs them), creates two sample alerts, and shows a live
 * summary until Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { closeRedis, createRedis, type Redis } from '../platform/redis.ts'
import { UsageError } from '../platform/command.ts'
import { readHeartbeats } from '../platform/heartbeat.ts'
import { type Daemon, daemons } from './daemons.ts'
import { defineService } from './shape.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const cli = fileURLToPath(new URL('../cli.ts', import.meta.url))

const spec = {
  name: 'demo',
  usage: '[--csv FILE] [--fixture FILE] [--until-idle]',
  description:
    'Starts local infrastructure if needed, loads the sample users and stocks, produces the sample CSV\n' +
    'into Kafka, runs every service (price updater, performance, the trading API with its verifier and\n' +
    'callback sender, the simulated verification API, the events worker, the product alerts with the\n' +
    'simulated eBay and a local mail sink, the BTC price poller with simulated providers), creates two\n' +
    'sample alerts, prints a token for user1, where to read the alert emails and how to buy BTC, and shows\n' +
    'a live summary until Ctrl-C. Verifications take 0.1-10 s: the\n' +
    'seed\'s 1-100 s at --time-scale 0.1. eBay prices move every minute (a simulated hour), and insights\n' +
    'look 10 minutes back instead of 2 days, so a price-drop email can come within the demo.',
  options: {
    csv: { type: 'string', default: 'fixtures/sample-prices.csv' },
    fixture: { type: 'string', default: 'fixtures/sample-redis.txt' },
    'until-idle': { type: 'boolean', default: false },
    'time-scale': { type: 'string', default: '0.1' },
  },
  help: {
    csv: 'Price CSV to stream',
    fixture: 'Redis fixture with the users and stocks',
    'until-idle': 'Exit once everything is ingested and one performance cycle ran (for scripts)',
    'time-scale': 'Speed of the simulated verification API (1 = the seed\'s 1-100 s)',
  },
} as const

/** Runs `bourse <args>` as a child process, its output shown with a prefix. */
function startStep(name: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, [cli, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const prefix = (stream: NodeJS.WritableStream) => (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) stream.write(`[${name}] ${line}\n`)
  }
  child.stdout?.on('data', prefix(process.stdout))
  child.stderr?.on('data', prefix(process.stderr))
  return child
}

async function finish(child: ChildProcess): Promise<number> {
  if (child.exitCode !== null) return child.exitCode
  const [code] = (await once(child, 'exit')) as [number | null]
  return code ?? 1
}

async function step(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  process.stdout.write(`==> bourse ${args.join(' ')}\n`)
  const code = await finish(startStep(name, args, env))
  if (code !== 0) throw new Error(`bourse ${args[0]} exited with code ${code}`)
}

/** Runs `bourse <args>` and resolves with its stdout (stderr is shown). */
async function capture(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const child = spawn(process.execPath, [cli, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d
  })
  const code = await finish(child)
  if (code !== 0) throw new Error(`bourse ${args[0]} exited with code ${code}`)
  return out.trim()
}

/** Order counts by state, from the API's point of view (admin token). */
async function orderSummary(apiUrl: string, token: string): Promise<string> {
  const counts = new Map<string, number>()
  let cursor: string | null = null
  for (let page = 0; page < 20; page++) {
    const query: string = cursor === null ? '' : `&cursor=${cursor}`
    const res = await fetch(`${apiUrl}/api/orders?limit=200${query}`, { headers: { authorization: `Bearer ${token}` } })
    if (!res.ok) return `orders: API answered ${res.status}`
    const body = (await res.json()) as { items: Array<{ status: string; reason: string | null }>; next_cursor: string | null }
    for (const o of body.items) {
      const key = o.reason ?? o.status
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
    cursor = body.next_cursor
    if (cursor === null) break
  }
  return counts.size === 0 ? 'orders: none yet' : `orders: ${[...counts].map(([k, v]) => `${v} ${k}`).join(', ')}`
}

/** The BTC quote the orders are priced at, and the orders placed so far (their first page). */
async function btcSummary(apiUrl: string, token: string): Promise<string> {
  const headers = { authorization: `Bearer ${token}` }
  const price = await fetch(`${apiUrl}/api/btc/price`, { headers })
  if (!price.ok) return `BTC: API answered ${price.status}`
  const quote = (await price.json()) as Record<string, { price: string; source: string; age_ms: number; stale: boolean } | null>
  const prices = ['EUR', 'GBP', 'USD'].map((c) => {
    const q = quote[c]
    return q ? `${c} ${q.price} (${q.source}, ${Math.round(q.age_ms / 1000)} s${q.stale ? ', stale' : ''})` : `${c} -`
  })
  const orders = await fetch(`${apiUrl}/api/btc/orders?limit=200`, { headers })
  const count = orders.ok ? ((await orders.json()) as { items: unknown[]; next_cursor: string | null }) : undefined
  const n = count?.items.length ?? 0
  const placed = count ? `${n}${count.next_cursor ? '+' : ''} order${n === 1 ? '' : 's'} placed` : `orders: API answered ${orders.status}`
  return `BTC: ${prices.join(', ')}; ${placed}`
}

/**
 * A little traffic for the dashboard to show: three stock orders of user1 (the sell is
 * refused for want of shares) and five events of the demo's application (one without
 * its `path`, stored as an error). Returns what it did, as a line.
 */
async function sampleTraffic(apiUrl: string, userToken: string, appToken: string): Promise<string> {
  const post = async (path: string, token: string, body: unknown) => {
    const res = await fetch(`${apiUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return res.status
  }
  const orders = [
    { user: 'user1', stockname: 'stock1', quantity: 10, side: 'buy' },
    { user: 'user1', stockname: 'stock2', quantity: 5, side: 'buy' },
    { user: 'user1', stockname: 'stock3', quantity: 1_000_000, side: 'sell' },
  ]
  const placed = (await Promise.all(orders.map((order) => post('/api/orders', userToken, order)))).filter((s) => s === 202).length
  const session = randomUUID()
  const events = ['/', '/pricing', '/signup', '/docs'].map((path) => ({ category: 'page interaction', name: 'pageview', data: { host: 'demo.bourse.local', path } }))
  events.push({ category: 'page interaction', name: 'pageview', data: { host: 'demo.bourse.local' } as { host: string; path: string } })
  let sent = 0
  for (const event of events) {
    if ((await post('/api/events', appToken, { session_id: session, ...event, timestamp: new Date().toISOString() })) === 202) sent++
  }
  return `${placed} orders and ${sent} events (one of them invalid, to show an error) sent`
}

/** The simulated BTC price providers of the demo (`bourse btc-price-sim`, its default port). */
const BTC_SIM_URL = 'http://127.0.0.1:8300'

/** Where `bourse mail-sink` shows the emails it received (its default port). */
const MAIL_SINK_URL = 'http://127.0.0.1:8025'

/** The demo's sample alerts: user1 watching two searches. */
const SAMPLE_ALERTS = [
  { email: 'user1@example.com', phrase: 'drone camera', frequency_minutes: 2 },
  { email: 'user1@example.com', phrase: 'vintage watch', frequency_minutes: 10, max_price: '25.00' },
]

/**
 * Creates the sample alerts through the API once it answers (an earlier demo's are found
 * by their 409 and reused); resolves to a line saying what there is.
 */
async function createSampleAlerts(apiUrl: string, token: string, signal: AbortSignal): Promise<string> {
  const ids: string[] = []
  for (const alert of SAMPLE_ALERTS) {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${apiUrl}/api/alerts`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(alert),
          signal,
        })
        const body = (await res.json()) as { id?: string; error?: { details?: { alert_id?: string } } }
        if (res.status === 201 && body.id) ids.push(body.id)
        else if (res.status === 409) ids.push(body.error?.details?.alert_id ?? '?')
        else if (res.status < 500) return `could not create the sample alerts (${res.status})`
        else throw new Error(`API answered ${res.status}`)
        break
      } catch (err) {
        // The API is still starting (the services start together): try again for up to 2 minutes.
        if (signal.aborted || attempt >= 240) return `could not create the sample alerts (${(err as Error).message})`
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
  }
  return `alerts ${ids.join(', ')} for user1 ("${SAMPLE_ALERTS.map((a) => a.phrase).join('", "')}")`
}

/** How many alert emails the mail sink holds. */
async function mailSummary(): Promise<string> {
  const res = await fetch(`${MAIL_SINK_URL}/health`)
  if (!res.ok) return 'alert emails: mail sink not answering'
  const body = (await res.json()) as { messages?: number }
  return `alert emails received: ${body.messages ?? 0} (${MAIL_SINK_URL}/)`
}

/** One line per stock: ticks, last price, performance. */
async function summary(redis: Redis): Promise<string> {
  const stocks = (await redis.smembers('bourse:stocks')).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  const rows = ['stock      ticks   last price   performance %']
  for (const stock of stocks) {
    const raw = await redis.get(stock)
    if (!raw) continue
    const json = JSON.parse(raw) as { time: unknown[]; price: Array<number | ''>; performance?: number }
    const last = [...json.price].reverse().find((p) => p !== '')
    rows.push(
      `${stock.padEnd(10)} ${String(json.time.length).padStart(5)}   ${String(last ?? '-').padStart(10)}   ` +
        `${String(json.performance ?? '-').padStart(13)}`,
    )
  }
  return rows.join('\n')
}

export const { run } = defineService({
  spec,
  parse: ({ values }) => {
    const scale = Number(values['time-scale'])
    if (!(scale > 0 && scale <= 1)) throw new UsageError('--time-scale must be a number above 0, at most 1')
    return { scale, csv: values.csv, fixture: values.fixture, untilIdle: values['until-idle'] }
  },
  async start({ config, log, lifecycle }, { scale, csv, fixture, untilIdle }) {
    // The stall limit is scaled with the simulated API, as the seed's 60 s is to its 1-100 s.
    const env = {
      ...process.env,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      VERIFY_URL: process.env.VERIFY_URL ?? 'http://127.0.0.1:8100/verify',
      VERIFY_TIMEOUT_MS: process.env.VERIFY_TIMEOUT_MS ?? String(Math.round(60_000 * scale)),
      CALLBACK_ALLOWED_NETWORKS: process.env.CALLBACK_ALLOWED_NETWORKS ?? '127.0.0.1',
      // eBay's simulated prices move every real minute: insights over the last 10 minutes.
      INSIGHT_WINDOW_MS: process.env.INSIGHT_WINDOW_MS ?? '600000',
      INSIGHT_FLAT_MS: process.env.INSIGHT_FLAT_MS ?? '600000',
      INSIGHT_MIN_INTERVAL_MS: process.env.INSIGHT_MIN_INTERVAL_MS ?? '600000',
      // The poller asks the simulated providers, never the internet.
      BTC_PROVIDER_URLS: process.env.BTC_PROVIDER_URLS ?? ['coinbase', 'coingecko', 'kraken'].map((p) => `${p}=${BTC_SIM_URL}`).join(','),
    }
    const children: ChildProcess[] = []
    lifecycle.onClose('services', async () => {
      for (const child of children) if (child.exitCode === null) child.kill('SIGTERM')
      await Promise.all(children.map(finish))
    })
    try {
      await step('infra', ['infra', 'up'], env)
      // A clean demo: the fixture's credit wins over what earlier runs traded.
      await step('seed', ['seed', fixture, '--reset-accounts'], env)
      await step('produce', ['produce', '--csv', csv], env)
      // Seeding reset the histories, so this run reads the topic from its start under a
      // group of its own; the topic holds each row once (the producer resumes).
      const group = `demo-${Date.now()}`
      // Opened only now: `infra up` may have just started Redis.
      const redis = createRedis(config.REDIS_URL, log, 'demo')
      lifecycle.onClose('redis', () => closeRedis(redis))

      if (untilIdle) {
        await step('price-updater', ['price-updater', '--group', group, '--until-idle'], env)
        await step('performance', ['performance', '--once'], env)
        process.stdout.write(`${await summary(redis)}\n`)
        return 0
      }

      await step('migrate', ['migrate'], env)
      process.stdout.write('==> bourse tokens create user1 / --admin\n')
      const userToken = await capture(['tokens', 'create', 'user1', '--label', 'demo'], env)
      const adminToken = await capture(['tokens', 'create', '--admin', '--label', 'demo'], env)
      const appToken = await capture(['apps', 'create', `demo-${Date.now()}`], env)
      process.stdout.write(`==> running ${daemons.join(', ')} (Ctrl-C to stop)\n`)
      const serviceArgs: Record<Daemon, string[]> = {
        'price-updater': ['--group', group],
        performance: [],
        'verify-sim': ['--time-scale', String(scale)],
        api: [],
        verifier: [],
        'callback-sender': [],
        'events-worker': [],
        'ebay-sim': ['--time-scale', '60'],
        'mail-sink': [],
        'alerts-scheduler': [],
        'alerts-worker': [],
        'btc-price-sim': [],
        'btc-price': [],
      }
      for (const name of daemons) children.push(startStep(name, [name, ...serviceArgs[name]], env))
      // Live ticks, each stock walking on from its last price in the CSV, so prices keep moving.
      const ticker = ['generate', '--after', csv, '--rate', '1', '--max-move', '0.5', '--empty-percent', '1', '--topic', config.MARKET_TOPIC]
      process.stdout.write(`==> bourse ${ticker.join(' ')}\n`)
      children.push(startStep('generate', ticker, env))
      const apiUrl = `http://${config.HOST}:${config.PORT}`
      const alerts = await createSampleAlerts(apiUrl, userToken, lifecycle.signal)
      // Ctrl-C while the services were starting: nothing to show.
      if (lifecycle.signal.aborted) {
        await lifecycle.shutdown()
        return 0
      }
      const traffic = await sampleTraffic(apiUrl, userToken, appToken).catch((err: unknown) => `no sample traffic (${(err as Error).message})`)
      process.stdout.write(
        [
          `Dashboard: ${apiUrl}/dashboard#token=${adminToken}`,
          `  (signed in with a new admin token; ${traffic})`,
          `API: ${apiUrl}  (Swagger UI: ${apiUrl}/docs)`,
          `token for user1: ${userToken}`,
          'try:',
          `  curl -s -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' \\`,
          `    -d '{"user":"user1","stockname":"stock1","quantity":10}' ${apiUrl}/api/buy-stock`,
          `  curl -s -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' \\`,
          `    -d '{"user":"user1","stockname":"stock1","quantity":10,"side":"buy"}' ${apiUrl}/api/orders`,
          `  curl -N -H 'authorization: Bearer ${userToken}' ${apiUrl}/api/orders/ORDER_ID/events`,
          '  npx bourse status      # every running service, its instance and status',
          `product alerts: ${alerts}`,
          `  their emails (every 2 and 10 minutes, the first within 2): ${MAIL_SINK_URL}/`,
          `  the queues: ${apiUrl}/admin/queues (sign in with the admin token: ${adminToken})`,
          `  curl -s -H 'authorization: Bearer ${userToken}' ${apiUrl}/api/alerts`,
          `BTC orders, priced at the quote polled from the simulated providers (${BTC_SIM_URL}):`,
          `  curl -s -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' \\`,
          `    -H "idempotency-key: $(date +%s)" -d '{"currency":"EUR","amount":"250.00"}' ${apiUrl}/api/btc/orders`,
          `  curl -s -H 'authorization: Bearer ${userToken}' ${apiUrl}/api/btc/orders`,
          '',
        ].join('\n'),
      )
      for (const child of children) {
        child.once('exit', (code) => {
          if (!lifecycle.signal.aborted) {
            log.error({ code }, 'a service stopped unexpectedly')
            void lifecycle.shutdown('service exited')
          }
        })
      }
      const tty = Boolean(process.stdout.isTTY)
      let shown = 0
      const show = async () => {
        const orders = await orderSummary(apiUrl, adminToken).catch(() => 'orders: API not answering yet')
        const live = new Set((await readHeartbeats(redis)).map((beat) => beat.service))
        const missing = daemons.filter((name) => !live.has(name))
        const services = `services: ${daemons.length - missing.length}/${daemons.length} live${missing.length > 0 ? ` (waiting for ${missing.join(', ')})` : ''}`
        const mails = await mailSummary().catch(() => 'alert emails: mail sink not answering yet')
        const btc = await btcSummary(apiUrl, adminToken).catch(() => 'BTC: API not answering yet')
        const text = `${new Date().toISOString().slice(11, 19)}  ${services}\n${await summary(redis)}\n${orders}\n${mails}\n${btc}\n`
        if (tty && shown > 0) process.stdout.write(`\x1b[${shown}F\x1b[J`)
        process.stdout.write(text)
        shown = tty ? text.split('\n').length - 1 : 0
      }
      const timer = setInterval(() => void show().catch((err: unknown) => log.warn({ err }, 'summary failed')), tty ? 2000 : 10_000)
      lifecycle.onClose('summary', () => clearInterval(timer))
      await show()
      await lifecycle.stopping
      await lifecycle.shutdown()
      process.stdout.write('stopped; local infrastructure keeps running (`npx bourse infra down` stops it)\n')
      return 0
    } catch (err) {
      process.stderr.write(`demo: ${(err as Error).message}\n`)
      return 1
    }
  },
})
