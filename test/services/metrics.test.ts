/**
 * `/metrics` of the API and of every long-running service, each a real process on the
 * test Redis, Kafka topics and PostgreSQL schema: scraped, parsed as Prometheus text, and
 * their counters and histograms moving when work is done (ticks applied, an order
 * verified and its callback delivered, an event stored, a performance cycle).
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import type { PrometheusSample } from 'parse-prometheus-text-format'
import { createApiToken } from '../../src/auth/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import { createStockHistoryRepository } from '../../src/market/index.ts'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { startCallbackReceiver, type CallbackReceiver } from '../helpers/callback-receiver.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { sampleEvent } from '../helpers/events.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { produceTicks, ticksWithCorrections } from '../helpers/market.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'
import { scrapeMetrics, seriesTotal } from '../helpers/prometheus.ts'

let redis: Redis
let testDb: TestDb
let receiver: CallbackReceiver
const cleanups: Array<() => Promise<void>> = []
const services: ServiceProcess[] = []
const secrets = new Map<string, string>()

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
  receiver = await startCallbackReceiver((user) => secrets.get(user))
})
after(async () => {
  for (const service of services) await service.kill()
  await receiver.close()
  for (const cleanup of cleanups) await cleanup()
  await testDb.close()
  await closeTestRedis(redis)
})

/** Starts a service and resolves with the URL it serves its metrics at. */
async function startWithMetrics(args: string[], env: NodeJS.ProcessEnv): Promise<{ service: ServiceProcess; url: string }> {
  const service = startService([...args, '--metrics-port', '0'], env)
  services.push(service)
  const [, url] = await service.waitForOutput(/metrics at (http:\/\/\S+)/, 60_000)
  return { service, url: url! }
}

type Series = Map<string, PrometheusSample[]>

test('every service serves Prometheus metrics whose counters move with the work done', async () => {
  const market = uniqueName('metrics-market')
  const orders = uniqueName('metrics-orders')
  const events = uniqueName('metrics-events')
  for (const topic of [market, orders, events]) cleanups.push(await createTestTopic(topic, 1))
  const [user] = await createAccounts(testDb.db, [{ id: 'user1', credit: 100_000 }])
  await projectUser(redis, user!)
  secrets.set('user1', user!.webhook_secret)
  await createStockHistoryRepository(redis).seedStock('stock1', { id: 1, price: [10], time: ['09:00'], performance: 0 })
  const userToken = (await createApiToken(testDb.db, { userId: 'user1' })).token
  const appToken = (await createApp(testDb.db, uniqueName('app'))).token

  const sim = await startWithMetrics(['verify-sim', '--port', '0', '--time-scale', '0.001'], testEnv())
  const [, verifyUrl] = await sim.service.waitForOutput(/listening on (http:\/\/\S+)/)
  const env = testEnv({
    ...testDb.env,
    ORDERS_TOPIC: orders,
    EVENTS_TOPIC: events,
    VERIFY_URL: verifyUrl!,
    CALLBACK_ALLOWED_NETWORKS: '127.0.0.1',
    PERFORMANCE_INTERVAL_MS: '300',
  })
  const updater = await startWithMetrics(['price-updater', '--topic', market, '--group', uniqueName('g')], env)
  const verifier = await startWithMetrics(['verifier', '--group', uniqueName('v')], env)
  const sender = await startWithMetrics(['callback-sender'], env)
  const worker = await startWithMetrics(['events-worker', '--group', uniqueName('e')], env)
  const performance = await startWithMetrics(['performance', '--cost-ms', '0', '--workers', '1'], env)
  const api = startService(['api', '--port', '0'], env)
  services.push(api)
  const [, apiUrl] = await api.waitForOutput(/api listening on (http:\/\/\S+) /, 60_000)
  const scrapeAll = async () => ({
    updater: (await scrapeMetrics(updater.url)).series,
    verifier: (await scrapeMetrics(verifier.url)).series,
    sender: (await scrapeMetrics(sender.url)).series,
    worker: (await scrapeMetrics(worker.url)).series,
    performance: (await scrapeMetrics(performance.url)).series,
    sim: (await scrapeMetrics(sim.url)).series,
    api: (await scrapeMetrics(`${apiUrl}/metrics`)).series,
  })

  const before = await scrapeAll()
  for (const [name, series] of Object.entries(before)) {
    assert.ok(series.has('process_resident_memory_bytes'), `${name} has process metrics`)
  }
  const total = (series: Series, name: string, labels: Record<string, string> = {}) => seriesTotal(series, name, labels)
  assert.equal(total(before.updater, 'bourse_consumer_messages_total'), 0)
  assert.equal(total(before.verifier, 'bourse_verification_duration_seconds_count'), 0)
  assert.equal(total(before.sender, 'bourse_callback_delay_seconds_count'), 0)
  assert.equal(total(before.worker, 'bourse_events_worker_stored_total'), 0)

  // The work: ticks, one order with a callback, one event.
  const ticks = ticksWithCorrections(500, 5, 9)
  await produceTicks(market, ticks)
  const order = await fetch(`${apiUrl}/api/orders`, {
    method: 'POST',
    headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy', callback_url: receiver.url }),
  })
  assert.equal(order.status, 202, await order.clone().text())
  const event = await fetch(`${apiUrl}/api/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${appToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(sampleEvent()),
  })
  assert.equal(event.status, 202, await event.clone().text())
  await waitFor(() => receiver.received.length > 0, { timeoutMs: 60_000, what: 'the callback' })

  const moved = await waitFor(
    async () => {
      const now = await scrapeAll()
      const done =
        total(now.updater, 'bourse_consumer_messages_total') >= ticks.length &&
        total(now.worker, 'bourse_events_worker_stored_total') >= 1 &&
        total(now.sender, 'bourse_callback_delay_seconds_count') >= 1 &&
        total(now.performance, 'bourse_performance_cycles_total') >= 1
      return done ? now : undefined
    },
    { timeoutMs: 60_000, intervalMs: 250, what: 'the counters to move' },
  )
  // Messages applied, batches and dead letters of the consumers.
  assert.equal(total(moved.updater, 'bourse_consumer_messages_total', { topic: market }), ticks.length)
  assert.ok(total(moved.updater, 'bourse_consumer_batches_total') >= 1)
  assert.equal(total(moved.updater, 'bourse_price_updater_messages_total'), ticks.length)
  assert.ok(moved.updater.has('bourse_consumer_dead_letters_total'), 'dead letters are counted (none here)')
  assert.equal(total(moved.verifier, 'bourse_consumer_messages_total', { topic: orders }), 1)
  assert.equal(total(moved.verifier, 'bourse_verifier_filled_total'), 1)
  // Verification time and callback delay.
  assert.equal(total(moved.verifier, 'bourse_verification_duration_seconds_count', { result: 'verified' }), 1)
  assert.ok(total(moved.verifier, 'bourse_verification_duration_seconds_sum') > 0)
  assert.equal(total(moved.sender, 'bourse_callback_delay_seconds_count', { first_attempt: 'true' }), 1)
  assert.equal(total(moved.sender, 'bourse_callback_sender_delivered_total'), 1)
  assert.equal(total(moved.worker, 'bourse_events_worker_stored_total'), 1)
  assert.equal(total(moved.worker, 'bourse_consumer_messages_total', { topic: events }), 1)
  assert.ok(total(moved.sim, 'bourse_verify_sim_received_total') >= 1)
  // HTTP request duration by route and status.
  assert.equal(total(moved.api, 'bourse_http_request_duration_seconds_count', { route: '/api/orders', method: 'POST', status_code: '202' }), 1)
  assert.equal(total(moved.api, 'bourse_http_request_duration_seconds_count', { route: '/api/events', method: 'POST', status_code: '202' }), 1)
})
