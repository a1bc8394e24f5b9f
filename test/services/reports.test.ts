/**
 * Service reports from real `bourse` processes, filed by the platform's service shape (no
 * service's own code): a start and a stop on SIGTERM; Redis cut and restored under one
 * (its reports kept meanwhile, appended once Redis is back); PostgreSQL cut and restored
 * under another; one report per transition however many errors came. And the real `bourse
 * api` moving them into PostgreSQL, where `GET /api/reports` and `GET /api/status` show them.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createApiToken } from '../../src/auth/index.ts'
import { type Heartbeat, heartbeatKey } from '../../src/platform/heartbeat.ts'
import { REPORTS_STREAM, type ServiceReport } from '../../src/platform/reports.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, testEnv, testRedisDb, uniqueName, waitFor } from '../helpers/infra.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'

let redis: Redis
let testDb: TestDb
const running: ServiceProcess[] = []
const cleanups: Array<() => Promise<void>> = []

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
})
after(async () => {
  for (const service of running) await service.kill()
  for (const cleanup of cleanups) await cleanup()
  await testDb.close()
  await closeTestRedis(redis)
})
beforeEach(async () => {
  await redis.del(REPORTS_STREAM)
})

function start(args: string[], env: Record<string, string> = {}): ServiceProcess {
  const service = startService(args, testEnv({ ...testDb.env, HEARTBEAT_INTERVAL_MS: '200', ...env }))
  running.push(service)
  return service
}

/** The reports of one instance in the stream, oldest first. */
async function reportsOf(instance: string): Promise<ServiceReport[]> {
  const entries = await redis.xrange(REPORTS_STREAM, '-', '+')
  return entries.map(([, fields]) => JSON.parse(fields[1]!) as ServiceReport).filter((r) => r.instance === instance)
}

/** Waits until the instance's reports have these statuses (in order), and gives them. */
async function waitForStatuses(instance: string, statuses: string[], timeoutMs = 60_000): Promise<ServiceReport[]> {
  return waitFor(
    async () => {
      const reports = await reportsOf(instance)
      return reports.map((r) => r.status).join() === statuses.join() ? reports : undefined
    },
    { what: `${instance} reporting ${statuses.join(', ')}`, timeoutMs, intervalMs: 100 },
  ).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; has: ${(await reportsOf(instance)).map((r) => `${r.status} ${JSON.stringify(r.data)}`).join('; ')}`)
  })
}

const mailSinkArgs = (instance: string) => ['mail-sink', '--port', '0', '--http', '0', '--instance-id', instance]

test('a service reports its start, and its stop on SIGTERM', async () => {
  const instance = uniqueName('sink')
  const sink = start(mailSinkArgs(instance))
  const [started] = await waitForStatuses(instance, ['started'])
  assert.equal(started!.level, 'info')
  assert.equal(started!.service, 'mail-sink')
  assert.equal(started!.data.pid, sink.child.pid)
  assert.equal(typeof started!.data.version, 'string')
  assert.equal(await sink.stop(), 0)
  const reports = await reportsOf(instance)
  assert.deepEqual(
    reports.map((r) => [r.level, r.status, r.data.reason]),
    [
      ['info', 'started', undefined],
      ['info', 'stopped', 'SIGTERM'],
    ],
  )
  assert.ok(Date.parse(reports[1]!.at) >= Date.parse(reports[0]!.at))
})

/** A proxy in front of the test's Redis or PostgreSQL. */
async function proxyFor(url: string): Promise<{ proxy: TcpProxy; url: URL }> {
  const target = new URL(url)
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) })
  cleanups.push(() => proxy.close())
  target.port = String(proxy.port)
  return { proxy, url: target }
}

test('Redis cut and restored under a service: one lost and one recovered report, kept while Redis was gone', async () => {
  const config = testConfig()
  const { proxy } = await proxyFor(`redis://127.0.0.1:${new URL(config.REDIS_URL).port || 6379}`)
  const instance = uniqueName('sink')
  const sink = start(mailSinkArgs(instance), { REDIS_URL: `redis://127.0.0.1:${proxy.port}/${testRedisDb}` })
  await waitForStatuses(instance, ['started'])
  await proxy.cut()
  // Several reconnection attempts fail meanwhile: still one report.
  await waitFor(() => (sink.output().match(/ECONNREFUSED/g)?.length ?? 0) >= 3, { what: 'reconnection attempts refused', timeoutMs: 30_000 })
  assert.deepEqual(
    (await reportsOf(instance)).map((r) => r.status),
    ['started'],
    'nothing appended while Redis is unreachable',
  )
  await proxy.restore()
  const reports = await waitForStatuses(instance, ['started', 'dependency_lost', 'dependency_recovered'])
  assert.equal(reports[1]!.level, 'error')
  assert.equal(reports[1]!.data.dependency, 'redis')
  assert.equal(reports[2]!.level, 'info')
  assert.equal(reports[2]!.data.dependency, 'redis')
  assert.equal(typeof reports[2]!.data.down_ms, 'number')
  // Made while Redis was gone, and dated then: the recovery after the loss.
  assert.ok(Date.parse(reports[2]!.at) >= Date.parse(reports[1]!.at))
  assert.equal(await sink.stop(), 0)
  await waitForStatuses(instance, ['started', 'dependency_lost', 'dependency_recovered', 'stopped'])
})

test('PostgreSQL cut and restored under a service: one lost and one recovered report', async () => {
  const config = testConfig()
  const { proxy, url } = await proxyFor(config.DATABASE_URL)
  const instance = uniqueName('scheduler')
  const scheduler = start(['alerts-scheduler', '--instance-id', instance], {
    DATABASE_URL: url.href,
    DATABASE_CONNECT_TIMEOUT_MS: '1000',
    QUEUE_PREFIX: uniqueName('reports'),
  })
  await waitForStatuses(instance, ['started'])
  await proxy.cut()
  const lost = await waitForStatuses(instance, ['started', 'dependency_lost'])
  assert.equal(lost[1]!.data.dependency, 'postgres')
  assert.equal(typeof lost[1]!.data.error, 'string')
  // Probes keep failing (one per heartbeat interval, 200 ms): still one report.
  const lostAt = Date.parse(lost[1]!.at)
  await waitFor(
    async () => {
      const beat = await redis.get(heartbeatKey('alerts-scheduler', instance))
      return beat !== null && Date.parse((JSON.parse(beat) as Heartbeat).last_beat) > lostAt + 2000
    },
    { what: 'ten more heartbeat intervals', timeoutMs: 30_000 },
  )
  assert.deepEqual(
    (await reportsOf(instance)).map((r) => r.status),
    ['started', 'dependency_lost'],
  )
  assert.equal(scheduler.output().match(/"msg":"dependency lost"/g)?.length, 1)
  await proxy.restore()
  const reports = await waitForStatuses(instance, ['started', 'dependency_lost', 'dependency_recovered'])
  assert.equal(reports[2]!.data.dependency, 'postgres')
  assert.equal(await scheduler.stop(), 0)
  await waitForStatuses(instance, ['started', 'dependency_lost', 'dependency_recovered', 'stopped'])
})

test('the API moves the reports into PostgreSQL: GET /api/reports and GET /api/status show them', async () => {
  const orders = uniqueName('orders')
  const events = uniqueName('events')
  cleanups.push(await createTestTopic(orders, 1), await createTestTopic(events, 1))
  const admin = (await createApiToken(testDb.db, { admin: true })).token
  const headers = { authorization: `Bearer ${admin}` }
  const apiInstance = uniqueName('api')
  const api = start(['api', '--port', '0', '--instance-id', apiInstance], { ORDERS_TOPIC: orders, EVENTS_TOPIC: events })
  const [, base] = (await api.waitForOutput(/api listening on (http:\/\/\S+) /, 60_000)) as unknown as [string, string]
  const sinkInstance = uniqueName('sink')
  start(mailSinkArgs(sinkInstance))

  const page = await waitFor(
    async () => {
      const res = await fetch(`${base}/api/reports?level=info`, { headers })
      assert.equal(res.status, 200)
      const body = (await res.json()) as { items: Array<{ service: string; instance: string; status: string; filed_by: string | null }> }
      const mine = body.items.filter((r) => r.instance === apiInstance || r.instance === sinkInstance)
      return mine.length === 2 ? mine : undefined
    },
    { what: 'the start reports of the API and the mail sink in PostgreSQL', timeoutMs: 60_000, intervalMs: 200 },
  )
  assert.deepEqual(page.map((r) => `${r.service} ${r.status} ${r.filed_by}`).sort(), ['api started null', 'mail-sink started null'])

  const res = await fetch(`${base}/api/status`, { headers })
  assert.equal(res.status, 200)
  const status = (await res.json()) as { instances: Array<{ service: string; instance: string }>; missing: string[]; reports: Array<{ instance: string }> }
  assert.ok(status.instances.some((i) => i.instance === apiInstance))
  assert.ok(status.instances.some((i) => i.instance === sinkInstance))
  assert.ok(!status.missing.includes('api') && !status.missing.includes('mail-sink'))
  assert.ok(status.missing.includes('verifier'))
  assert.ok(status.reports.some((r) => r.instance === sinkInstance))
  assert.equal(await api.stop(), 0)
})
