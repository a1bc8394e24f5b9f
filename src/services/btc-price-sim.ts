/** `bourse btc-price-sim`: a stand-in for the Coinbase, CoinGecko and Kraken price endpoints on one port, over real HTTP. */
import { createBtcPriceSim } from '../btc/btc-price-sim.ts'
import { intOption } from '../platform/command.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'btc-price-sim',
  usage: '[--port 8300] [--host 127.0.0.1] [--seed N] [--step-ms N]',
  description:
    'Simulates the BTC price endpoints `bourse btc-price` calls, all on one port with their paths and JSON:\n' +
    'Coinbase GET /v2/exchange-rates, CoinGecko GET /api/v3/simple/price and Kraken GET /0/public/Ticker, with\n' +
    'a seeded random-walk price. Faults per provider (failures, latencyMs, garbage, outliers): GET/POST\n' +
    '/sim/faults; fixed prices: POST /sim/prices; request counts: GET /sim/stats. Prints its URL (what each\n' +
    'entry of BTC_PROVIDER_URLS takes).',
  options: {
    port: { type: 'string', default: '8300' },
    host: { type: 'string', default: '127.0.0.1' },
    seed: { type: 'string', default: '1' },
    'step-ms': { type: 'string', default: '1000' },
  },
  help: {
    port: 'Port to listen on; 0 picks a free one',
    host: 'Interface to listen on (the /sim endpoints have no authentication: keep it on loopback)',
    seed: 'Seed of the random walk: the same seed gives the same walk',
    'step-ms': 'Real ms between two steps of the walk (each at most 0.1%); 0 keeps the price still',
  },
} as const

export const { run } = defineService({
  spec,
  daemon: true,
  parse: ({ values }) => ({
    host: values.host,
    port: intOption('port', values.port, 0, 65535)!,
    seed: intOption('seed', values.seed, 0, 2 ** 32 - 1)!,
    stepMs: intOption('step-ms', values['step-ms'], 0, 86_400_000)!,
  }),
  async start({ log, lifecycle }, { host, port, seed, stepMs }) {
    const sim = createBtcPriceSim({ seed, stepMs })
    lifecycle.onClose('btc-price-sim', async () => {
      await sim.close()
      log.info({ ...sim.stats }, 'stopped')
    })
    const { url } = await sim.listen(port, host)
    log.debug({ url, seed, stepMs }, 'listening')
    process.stdout.write(`btc-price-sim listening on ${url}\n`)
    return { stats: sim.stats, status: () => ({ prices: sim.prices() }) }
  },
})
