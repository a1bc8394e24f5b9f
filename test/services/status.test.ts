/**
 * `bourse status` over every long-running service of the demo, each a real process on the
 * test Redis, Kafka topics and PostgreSQL schema: all live with their status, and one
 * SIGKILLed is reported missing once its heartbeat's time to live has run out.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { heartbeatKey, type Heartbeat } from '../../src/platform/heartbeat.ts'
import { daemons } from '../../src/services/daemons.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, createTestTopic, openTestRedis, runCli, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

const INTERVAL_MS = 500

let redis: Redis
let testDb: TestDb
const cleanups: Array<() => Promise<void>> = []
const services = new Map<string, ServiceProcess>()

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
})
after(async () => {
  for (const service of services.values()) await service.kill()
  for (const cleanup of cleanups) await cleanup()
  await testDb.close()
  await closeTestRedis(redis)
})

/** `bourse status --json`, parsed. */
async function status(env: NodeJS.ProcessEnv) {
  const result = await runCli(['status', '--json'], env)
  const body = JSON.parse(result.stdout) as { instances: Heartbeat[]; missing: string[] }
  return { code: result.code, ...body }
}

test('status lists every service of the demo with its status, and a SIGKILLed one as missing within its TTL', async () => {
  const market = uniqueName('status-market')
  const orders = uniqueName('status-orders')
  const events = uniqueName('status-events')
  for (const topic of [market, orders, events]) cleanups.push(await createTestTopic(topic, 1))
  const env = testEnv({
    ...testDb.env,
    HEARTBEAT_INTERVAL_MS: String(INTERVAL_MS),
    ORDERS_TOPIC: orders,
    EVENTS_TOPIC: events,
    PERFORMANCE_INTERVAL_MS: '60000',
    QUEUE_PREFIX: uniqueName('status'),
    // Nothing listens there: the poller keeps failing over, and never reaches the internet.
    BTC_PROVIDER_URLS: 'coinbase=http://127.0.0.1:9',
  })
  const args: Record<(typeof daemons)[number], string[]> = {
    'price-updater': ['--topic', market, '--group', uniqueName('g')],
    performance: ['--cost-ms', '0'],
    'verify-sim': ['--port', '0', '--time-scale', '0.001'],
    api: ['--port', '0'],
    verifier: ['--group', uniqueName('v')],
    'callback-sender': [],
    'events-worker': ['--group', uniqueName('e')],
    'ebay-sim': ['--port', '0'],
    'mail-sink': ['--port', '0', '--http', '0'],
    'alerts-scheduler': [],
    'alerts-worker': [],
    'btc-price-sim': ['--port', '0'],
    'btc-price': [],
  }
  const before = await status(env)
  assert.equal(before.code, 1)
  assert.deepEqual(before.missing, [...daemons])

  for (const name of daemons) services.set(name, startService([name, ...args[name]], env))
  const live = await waitFor(
    async () => {
      const now = await status(env)
      return now.code === 0 ? now : undefined
    },
    { timeoutMs: 90_000, intervalMs: 500, what: 'every service live' },
  )
  assert.deepEqual(live.missing, [])
  assert.deepEqual([...new Set(live.instances.map((b) => b.service))].sort(), [...daemons].sort())
  for (const beat of live.instances) {
    assert.equal(beat.pid, services.get(beat.service)!.child.pid, `${beat.service} pid`)
    assert.equal(beat.ttl_ms, INTERVAL_MS * 3)
    assert.ok(Date.parse(beat.last_beat) >= Date.parse(beat.started_at), `${beat.service} beat after start`)
  }
  const statusOf = (service: string) => live.instances.find((b) => b.service === service)!.status
  // Each service's own status: consumers report their totals and lag, the others theirs.
  assert.equal(typeof statusOf('price-updater').messages, 'number')
  assert.equal(typeof statusOf('verifier').inFlight, 'number')
  assert.equal(typeof statusOf('events-worker').stored, 'number')
  assert.equal(typeof statusOf('callback-sender').delivered, 'number')
  assert.equal(typeof statusOf('verify-sim').pending, 'number')
  assert.equal(typeof statusOf('performance').cycles, 'number')
  await waitFor(async () => ((await status(env)).instances.find((b) => b.service === 'verifier')?.status.lag as object | undefined), {
    timeoutMs: 30_000,
    what: 'the verifier reporting its consumer lag',
  })

  const table = await runCli(['status'], env)
  assert.equal(table.code, 0, table.stderr)
  for (const name of daemons) assert.match(table.stdout, new RegExp(`^${name} `, 'm'))
  assert.match(table.stdout, /every expected service is live/)

  // SIGKILL: no clean shutdown removes the heartbeat, only its time to live.
  const victim = services.get('verifier')!
  const beat = live.instances.find((b) => b.service === 'verifier')!
  const keys = await redis.keys(heartbeatKey('verifier', '*'))
  assert.deepEqual(keys, [heartbeatKey('verifier', beat.instance)])
  const ttlAtKill = await redis.pttl(keys[0]!)
  await victim.kill()
  assert.ok(ttlAtKill > 0 && ttlAtKill <= INTERVAL_MS * 3, `the heartbeat expires on its own (pttl ${ttlAtKill})`)
  await waitFor(async () => (await redis.exists(keys[0]!)) === 0, { what: 'the heartbeat to expire', intervalMs: 20 })
  const after = await status(env)
  assert.equal(after.code, 1)
  assert.deepEqual(after.missing, ['verifier'])
  assert.ok(!after.instances.some((b) => b.service === 'verifier'))
  assert.equal(after.instances.length, daemons.length - 1)

  // A clean stop removes the heartbeat at once.
  const sim = services.get('verify-sim')!
  assert.equal(await sim.stop(), 0)
  assert.equal((await redis.keys(heartbeatKey('verify-sim', '*'))).length, 0, 'removed on SIGTERM')
})
