/** `bourse verify-sim`: a stand-in for the external verification API, over real HTTP. */
import { createVerificationSim } from '../trading/verification-sim.ts'
import { createServiceContext, intOption, parseCommand, runCommand, UsageError } from './context.ts'

const spec = {
  name: 'verify-sim',
  usage: '[--port 8100] [--host 127.0.0.1] [--time-scale 1] [--min-seconds 1] [--max-seconds 100] [--fail-rate 0] [--seed N]',
  description:
    'Simulates the external verification API: POST /verify with {"user": "user1", "order_id": "..."}\n' +
    'answers {"result": 0} (verified) or {"result": 1} (not verified) after a random whole number of\n' +
    'seconds, times --time-scale. GET /health reports the requests waiting. Prints the URL it listens on.',
  options: {
    port: { type: 'string', default: '8100' },
    host: { type: 'string', default: '127.0.0.1' },
    'time-scale': { type: 'string', default: '1' },
    'min-seconds': { type: 'string', default: '1' },
    'max-seconds': { type: 'string', default: '100' },
    'fail-rate': { type: 'string', default: '0' },
    seed: { type: 'string' },
  },
  help: {
    port: 'Port to listen on; 0 picks a free one',
    host: 'Interface to listen on',
    'time-scale': 'Multiplies every delay: 0.001 answers after 1-100 ms instead of 1-100 s',
    'min-seconds': 'Shortest delay, in whole seconds before scaling',
    'max-seconds': 'Longest delay, in whole seconds before scaling',
    'fail-rate': 'Fraction of requests answered {"result": 1} (not verified), 0 to 1',
    seed: 'Seed of the delays and failures, for repeatable runs',
  },
} as const

/** A decimal option within bounds, naming it when it is not one. */
function numberOption(name: string, value: string, min: number, max: number, minExclusive = false): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n > max || (minExclusive ? n <= min : n < min)) {
    const range = minExclusive ? `greater than ${min} and at most ${max}` : `from ${min} to ${max}`
    throw new UsageError(`--${name} must be a number ${range} (got ${JSON.stringify(value)})`)
  }
  return n
}

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const port = intOption('port', args.values.port, 0, 65535)
    const minSeconds = intOption('min-seconds', args.values['min-seconds'], 0, 86_400)!
    const maxSeconds = intOption('max-seconds', args.values['max-seconds'], 0, 86_400)!
    if (maxSeconds < minSeconds) throw new UsageError('--max-seconds must not be below --min-seconds')
    const timeScale = numberOption('time-scale', args.values['time-scale'], 0, 1000, true)
    const failRate = numberOption('fail-rate', args.values['fail-rate'], 0, 1)
    const seed = intOption('seed', args.values.seed, 0, 2 ** 32 - 1)
    const { log, lifecycle } = createServiceContext('verify-sim')

    const sim = createVerificationSim({
      host: args.values.host,
      ...(port !== undefined && { port }),
      timeScale,
      minSeconds,
      maxSeconds,
      failRate,
      ...(seed !== undefined && { seed }),
    })
    lifecycle.onClose('verify-sim', async () => {
      await sim.close()
      log.info({ ...sim.stats }, 'stopped')
    })
    const progress = setInterval(() => log.info({ ...sim.stats }, 'progress'), 10_000)
    lifecycle.onClose('progress', () => clearInterval(progress))
    try {
      const url = await sim.listen()
      log.debug({ url, timeScale, minSeconds, maxSeconds, failRate }, 'listening')
      process.stdout.write(`verify-sim listening on ${url}\n`)
      await lifecycle.stopping
      return 0
    } catch (err) {
      log.error({ err }, 'verify-sim failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
