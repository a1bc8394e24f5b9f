/**
 * `bourse ebay-sim` as a real process: it accepts the configured credentials, answers
 * from the catalogue of its seed at its time scale, takes faults over HTTP, beats a
 * heartbeat and serves metrics, and stops cleanly on SIGTERM.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { request } from 'undici'
import { createEbayClient, type EbayClient, EbayError } from '../../src/alerts/ebay.client.ts'
import { createEbayCatalogue } from '../../src/alerts/ebay-sim.catalogue.ts'
import { heartbeatKey } from '../../src/platform/heartbeat.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv, waitFor } from '../helpers/infra.ts'
import { scrapeMetrics, seriesTotal } from '../helpers/prometheus.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

let redis: Redis
const services: ServiceProcess[] = []
const clients: EbayClient[] = []

before(async () => {
  redis = await openTestRedis()
})
after(async () => {
  for (const client of clients) await client.close()
  for (const service of services) await service.kill()
  await closeTestRedis(redis)
})

function client(url: string, clientId: string, clientSecret: string): EbayClient {
  const ebay = createEbayClient({ baseUrl: url, clientId, clientSecret, marketplaceId: 'EBAY_US', timeoutMs: 5000 })
  clients.push(ebay)
  return ebay
}

test('bad options exit 2 naming the option', async () => {
  const results = await Promise.all([
    runCli(['ebay-sim', '--latency-ms', 'soon']),
    runCli(['ebay-sim', '--time-scale', '0']),
    runCli(['ebay-sim', '--port', '70000']),
    runCli(['ebay-sim', '--seed', 'x']),
  ])
  const messages = [/--latency-ms must be a whole number/, /--time-scale must be a number greater than 0/, /--port must be a whole number/, /--seed must be a whole number/]
  for (const [i, result] of results.entries()) {
    assert.equal(result.code, 2, result.stderr)
    assert.match(result.stderr, messages[i]!)
  }
})

test('serves the catalogue of its seed with the configured credentials, takes faults, and stops on SIGTERM', async () => {
  const env = testEnv({ EBAY_CLIENT_ID: 'app-1', EBAY_CLIENT_SECRET: 'not the default' })
  const sim = startService(['ebay-sim', '--port', '0', '--seed', '3', '--latency-ms', '5', '--time-scale', '60', '--metrics-port', '0'], env)
  services.push(sim)
  const [, url] = await sim.waitForOutput(/^ebay-sim listening on (http:\/\/127\.0\.0\.1:\d+)$/m)
  const [, metricsUrl] = await sim.waitForOutput(/metrics at (http:\/\/\S+)/)

  const refused = await client(url!, 'bourse-sim', 'bourse-sim-secret')
    .search('drone')
    .catch((err: unknown) => err)
  assert.ok(refused instanceof EbayError && refused.code === 'auth_failed', 'the default credentials are not the configured ones')

  const ebay = client(url!, 'app-1', 'not the default')
  // A simulated hour per real minute: the answer is the catalogue's at the step of the
  // search, one of the steps around it.
  const catalogue = createEbayCatalogue({ seed: 3, timeScale: 60 })
  const before = Date.now()
  const result = await ebay.search('drone')
  const after = Date.now()
  const expected = [catalogue.cheapest('drone', { now: before }), catalogue.cheapest('drone', { now: after })]
  assert.ok(expected.some((items) => JSON.stringify(items) === JSON.stringify(result.items)), 'the catalogue of seed 3 at time scale 60')
  assert.equal(result.items.length, 20)

  const faults = await request(`${url}/sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"serverErrors": 1}' })
  assert.equal(faults.statusCode, 200)
  assert.equal(((await faults.body.json()) as { serverErrors: number }).serverErrors, 1)
  const down = await ebay.search('drone').catch((err: unknown) => err)
  assert.ok(down instanceof EbayError && down.code === 'unavailable' && down.status === 500)
  assert.equal((await ebay.search('drone')).items.length, 20)
  const latency = await request(`${url}/sim/faults`)
  assert.equal(((await latency.body.json()) as { latencyMs: number }).latencyMs, 5, '--latency-ms is a fault in force')

  const stats = await request(`${url}/sim/stats`)
  const counted = (await stats.body.json()) as Record<string, number>
  assert.deepEqual(
    [counted.tokenRequests, counted.tokenRefused, counted.searchRequests, counted.searchesAnswered, counted.serverErrors],
    [2, 1, 3, 2, 1],
  )
  const { series } = await scrapeMetrics(metricsUrl!)
  assert.equal(seriesTotal(series, 'bourse_ebay_sim_search_requests_total'), 3)

  await waitFor(async () => (await redis.keys(heartbeatKey('ebay-sim', '*'))).length === 1, { what: 'the heartbeat' })
  assert.equal(await sim.stop(), 0, sim.output())
  assert.equal((await redis.keys(heartbeatKey('ebay-sim', '*'))).length, 0, 'heartbeat removed on SIGTERM')
})
