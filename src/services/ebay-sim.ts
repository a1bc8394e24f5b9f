/** `bourse ebay-sim`: a stand-in for eBay's OAuth token and Browse search endpoints, over real HTTP. */
import { createEbaySim } from '../alerts/ebay-sim.ts'
import { intOption, numberOption } from '../platform/command.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'ebay-sim',
  usage: '[--port 8200] [--host 127.0.0.1] [--seed N] [--latency-ms N] [--time-scale N]',
  description:
    'Simulates the eBay endpoints product alerts call: POST /identity/v1/oauth2/token (client credentials,\n' +
    'accepting EBAY_CLIENT_ID and EBAY_CLIENT_SECRET) and GET /buy/browse/v1/item_summary/search, with a\n' +
    'catalogue that is the same for a seed and prices that move every simulated hour. Faults to inject:\n' +
    'GET/POST /sim/faults; request counts: GET /sim/stats; fixed answers: POST /sim/items. Prints its URL\n' +
    '(what EBAY_BASE_URL takes).',
  options: {
    port: { type: 'string', default: '8200' },
    host: { type: 'string', default: '127.0.0.1' },
    seed: { type: 'string', default: '1' },
    'latency-ms': { type: 'string', default: '0' },
    'time-scale': { type: 'string', default: '1' },
  },
  help: {
    port: 'Port to listen on; 0 picks a free one',
    host: 'Interface to listen on (the /sim endpoints have no authentication: keep it on loopback)',
    seed: 'Seed of the items and their price moves: the same seed gives the same answers at the same time',
    'latency-ms': 'Delay before every search answer, in ms',
    'time-scale': 'Simulated time per real time: 60 moves prices every real minute instead of every hour',
  },
} as const

export const { run } = defineService({
  spec,
  daemon: true,
  parse: ({ values }, config) => ({
    host: values.host,
    port: intOption('port', values.port, 0, 65535)!,
    seed: intOption('seed', values.seed, 0, 2 ** 32 - 1)!,
    latencyMs: intOption('latency-ms', values['latency-ms'], 0, 600_000)!,
    timeScale: numberOption('time-scale', values['time-scale'], 0, 1_000_000, true)!,
    clientId: config.EBAY_CLIENT_ID,
    clientSecret: config.EBAY_CLIENT_SECRET,
  }),
  async start({ log, lifecycle }, { host, port, latencyMs, ...options }) {
    const sim = createEbaySim({ ...options, faults: { latencyMs } })
    lifecycle.onClose('ebay-sim', async () => {
      await sim.close()
      log.info({ ...sim.stats }, 'stopped')
    })
    const { url } = await sim.listen(port, host)
    log.debug({ url, seed: options.seed, timeScale: options.timeScale, latencyMs }, 'listening')
    process.stdout.write(`ebay-sim listening on ${url}\n`)
    return { stats: sim.stats, gauges: ['inFlight'] }
  },
})
