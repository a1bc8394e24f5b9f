/**
 * `bourse demo`: the whole market-data pipeline on this machine. Starts what
 * infrastructure is missing, loads the sample users and stocks, sends the sample CSV
 * into Kafka, runs the price updater and the performance service as their own
 * processes (exactly as `docker compose up` runs them), and shows a live summary until
 * Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { closeRedis, createRedis, type Redis } from '../platform/redis.ts'
import { createServiceContext, parseCommand, runCommand } from './context.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const cli = fileURLToPath(new URL('../cli.ts', import.meta.url))

const spec = {
  name: 'demo',
  usage: '[--csv FILE] [--fixture FILE] [--until-idle]',
  description:
    'Starts local infrastructure if needed, loads the sample users and stocks, produces the sample CSV\n' +
    'into Kafka, runs the price updater and the performance service, and shows a live summary until Ctrl-C.',
  options: {
    csv: { type: 'string', default: 'fixtures/sample-prices.csv' },
    fixture: { type: 'string', default: 'fixtures/sample-redis.txt' },
    'until-idle': { type: 'boolean', default: false },
  },
  help: {
    csv: 'Price CSV to stream',
    fixture: 'Redis fixture with the users and stocks',
    'until-idle': 'Exit once everything is ingested and one performance cycle ran (for scripts)',
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
    const { config, log, lifecycle } = createServiceContext('demo')
    const env = { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' }
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

      process.stdout.write('==> running price-updater and performance (Ctrl-C to stop)\n')
      children.push(startStep('price-updater', ['price-updater', '--group', group], env))
      children.push(startStep('performance', ['performance'], env))
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
        const text = `${new Date().toISOString().slice(11, 19)}\n${await summary(redis)}\n`
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
