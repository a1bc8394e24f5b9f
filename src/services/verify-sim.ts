/** `bourse verify-sim`: a stand-in for the external verification API, over real HTTP. */
import { createVerificationSim } from '../trading/verification-sim.ts'
import { intOption, numberOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

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

export const { run } = defineService({
  spec,
  daemon: true,
  parse: ({ values }) => {
    const minSeconds = intOption('min-seconds', values['min-seconds'], 0, 86_400)!
    const maxSeconds = intOption('max-seconds', values['max-seconds'], 0, 86_400)!
    if (maxSeconds < minSeconds) throw new UsageError('--max-seconds must not be below --min-seconds')
    const port = intOption('port', values.port, 0, 65535)
    const seed = intOption('seed', values.seed, 0, 2 ** 32 - 1)
    return {
      host: values.host,
      ...(port !== undefined && { port }),
      timeScale: numberOption('time-scale', values['time-scale'], 0, 1000, true)!,
      minSeconds,
      maxSeconds,
      failRate: numberOption('fail-rate', values['fail-rate'], 0, 1)!,
      ...(seed !== undefined && { seed }),
    }
  },
  async start({ log, lifecycle }, options) {
    const sim = createVerificationSim(options)
    lifecycle.onClose('verify-sim', async () => {
      await sim.close()
      log.info({ ...sim.stats }, 'stopped')
    })
    const url = await sim.listen()
    log.debug({ url, ...options }, 'listening')
    process.stdout.write(`verify-sim listening on ${url}\n`)
    return { stats: sim.stats, gauges: ['pending'] }
  },
})
