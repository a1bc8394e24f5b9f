/**
 * `bourse demo`: the whole system on this machine. Starts what infrastructure is
 * missing, loads the sample users and stocks, sends the sample CSV into Kafka, runs the
 * price updater, the performance service and the trading services (API, verifier,
 * callback sender and the simulated verification API) as their own processes (exactly as
 * `docker compose up` runs them), and shows a live summary until Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { closeRedis, createRedis, type Redis } from '../platform/redis.ts'
import { createServiceContext, parseCommand, runCommand, UsageError } from './context.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const cli = fileURLToPath(new URL('../cli.ts', import.meta.url))

const spec = {
  name: 'demo',
  usage: '[--csv FILE] [--fixture FILE] [--until-idle]',
  description:
    'Starts local infrastructure if needed, loads the sample users and stocks, produces the sample CSV\n' +
    'into Kafka, runs the price updater, the performance service and the trading API with its verifier\n' +
    '(verifications take 0.1-10 s: the seed\'s 1-100 s at --time-scale 0.1), prints a token for user1\n' +
    'and shows a live summary until Ctrl-C.',
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

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const scale = Number(args.values['time-scale'])
    if (!(scale > 0 && scale <= 1)) throw new UsageError('--time-scale must be a number above 0, at most 1')
    const { config, log, lifecycle } = createServiceContext('demo')
    // The stall limit is scaled with the simulated API, as the seed's 60 s is to its 1-100 s.
    const env = {
      ...process.env,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      VERIFY_URL: process.env.VERIFY_URL ?? 'http://127.0.0.1:8100/verify',
      VERIFY_TIMEOUT_MS: process.env.VERIFY_TIMEOUT_MS ?? String(Math.round(60_000 * scale)),
      CALLBACK_ALLOWED_NETWORKS: process.env.CALLBACK_ALLOWED_NETWORKS ?? '127.0.0.1',
    }
    const children: ChildProcess[] = []
    lifecycle.onClose('services', async () => {
      for (const child of children) if (child.exitCode === null) child.kill('SIGTERM')
      await Promise.all(children.map(finish))
    })
    try {
      await step('infra', ['infra', 'up'], env)
      await step('seed', ['seed', args.values.fixture], env)
      await step('produce', ['produce', '--csv', args.values.csv], env)
      // Seeding reset the histories, so this run reads the topic from its start under a
      // group of its own; the topic holds each row once (the producer resumes).
      const group = `demo-${Date.now()}`
      const redis = createRedis(config.REDIS_URL, log, 'demo')
      lifecycle.onClose('redis', () => closeRedis(redis))

      if (args.values['until-idle']) {
        await step('price-updater', ['price-updater', '--group', group, '--until-idle'], env)
        await step('performance', ['performance', '--once'], env)
        process.stdout.write(`${await summary(redis)}\n`)
        return 0
      }

      await step('migrate', ['migrate'], env)
      process.stdout.write('==> bourse tokens create user1 / --admin\n')
      const userToken = await capture(['tokens', 'create', 'user1', '--label', 'demo'], env)
      const adminToken = await capture(['tokens', 'create', '--admin', '--label', 'demo'], env)
      process.stdout.write('==> running price-updater, performance, api, verify-sim, verifier, callback-sender (Ctrl-C to stop)\n')
      children.push(startStep('price-updater', ['price-updater', '--group', group], env))
      children.push(startStep('performance', ['performance'], env))
      children.push(startStep('verify-sim', ['verify-sim', '--time-scale', String(scale)], env))
      children.push(startStep('api', ['api'], env))
      children.push(startStep('verifier', ['verifier'], env))
      children.push(startStep('callback-sender', ['callback-sender'], env))
      const apiUrl = `http://${config.HOST}:${config.PORT}`
      process.stdout.write(
        [
          `API: ${apiUrl}  (Swagger UI: ${apiUrl}/docs)`,
          `token for user1: ${userToken}`,
          'try:',
          `  curl -s -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' \\`,
          `    -d '{"user":"user1","stockname":"stock1","quantity":10}' ${apiUrl}/api/buy-stock`,
          `  curl -s -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' \\`,
          `    -d '{"user":"user1","stockname":"stock1","quantity":10,"side":"buy"}' ${apiUrl}/api/orders`,
          `  curl -N -H 'authorization: Bearer ${userToken}' ${apiUrl}/api/orders/ORDER_ID/events`,
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
        const text = `${new Date().toISOString().slice(11, 19)}\n${await summary(redis)}\n${orders}\n`
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
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
