/** `bourse btc-price-sim` as a real process: answers every provider's path on one port, takes faults, stops on SIGTERM. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { coinbaseProvider, krakenProvider, ProviderError } from '../../src/btc/providers.ts'
import { testEnv } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

const services: ServiceProcess[] = []
after(async () => {
  for (const service of services) await service.kill()
})

test('serves the providers, takes faults, and stops on SIGTERM', async () => {
  const sim = startService(['btc-price-sim', '--port', '0', '--step-ms', '0'], testEnv())
  services.push(sim)
  const [, url] = await sim.waitForOutput(/^btc-price-sim listening on (http:\/\/127\.0\.0\.1:\d+)$/m)
  const quote = await coinbaseProvider({ baseUrl: url! }).fetch(AbortSignal.timeout(5000))
  assert.deepEqual(quote, { EUR: '60000', GBP: '51000', USD: '65000' })
  const res = await fetch(`${url}/sim/faults`, { method: 'POST', body: '{"kraken":{"failures":1}}' })
  assert.equal(res.status, 200)
  await assert.rejects(krakenProvider({ baseUrl: url! }).fetch(AbortSignal.timeout(5000)), (err: unknown) => err instanceof ProviderError && err.status === 500)
  assert.equal(await sim.stop(), 0)
})
