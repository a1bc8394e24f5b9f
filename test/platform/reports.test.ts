/**
 * The reports a process files (`src/platform/reports.ts`), on the real Redis reached
 * through a TCP proxy the test cuts: appended to the stream at once while Redis is there,
 * kept in memory (a bounded number, the oldest dropped) while it is not and appended in
 * order once it is back; and one report per dependency transition, never one per error.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createLogger } from '../../src/platform/logger.ts'
import { createRedis, closeRedis } from '../../src/platform/redis.ts'
import { createDependencyReports, createReporter, REPORTS_STREAM, type ServiceReport } from '../../src/platform/reports.ts'
import { closeTestRedis, openTestRedis, testConfig, testRedisDb, waitFor } from '../helpers/infra.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'

const log = createLogger({ level: 'silent', pretty: false })
let redis: Redis
let proxy: TcpProxy
let proxied: Redis

before(async () => {
  redis = await openTestRedis()
  const url = new URL(testConfig().REDIS_URL)
  proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 6379) })
  proxied = createRedis(`redis://127.0.0.1:${proxy.port}/${testRedisDb}`, log, 'reports-test')
  await proxied.ping()
})
after(async () => {
  await closeRedis(proxied)
  await proxy.close()
  await closeTestRedis(redis)
})
beforeEach(async () => {
  await redis.del(REPORTS_STREAM)
})

/** The reports in the stream, oldest first. */
async function streamed(): Promise<ServiceReport[]> {
  const entries = await redis.xrange(REPORTS_STREAM, '-', '+')
  return entries.map(([, fields]) => JSON.parse(fields[1]!) as ServiceReport)
}

test('a report is appended at once while Redis is there, with who filed it and when', async () => {
  const reporter = createReporter({ redis: proxied, log, service: 'svc', instance: 'i1', now: () => new Date('2026-01-01T00:00:00.000Z') })
  reporter.report('info', 'started', { pid: 1 })
  await reporter.flush()
  assert.equal(reporter.pending, 0)
  assert.deepEqual(await streamed(), [
    { level: 'info', service: 'svc', instance: 'i1', status: 'started', data: { pid: 1 }, at: '2026-01-01T00:00:00.000Z' },
  ])
})

test('the stream is capped near streamMaxLen', async () => {
  const reporter = createReporter({ redis: proxied, log, service: 'svc', instance: 'i1', streamMaxLen: 10 })
  for (let i = 0; i < 500; i++) reporter.report('info', `n${i}`)
  await reporter.flush()
  const length = await redis.xlen(REPORTS_STREAM)
  // MAXLEN ~ trims whole nodes of the stream (100 entries by default), never below the cap.
  assert.ok(length >= 10 && length < 500, `length ${length}`)
  const last = (await streamed()).at(-1)
  assert.equal(last?.status, 'n499')
})

test('while Redis is cut, reports are kept (the oldest dropped beyond the bound) and appended in order once it is back', async () => {
  const reporter = createReporter({ redis: proxied, log, service: 'svc', instance: 'i1', bufferSize: 3 })
  await proxy.cut()
  await waitFor(() => proxied.status !== 'ready', { what: 'the client to see Redis gone' })
  for (let i = 0; i < 5; i++) reporter.report('error', `while down ${i}`)
  await reporter.flush()
  assert.equal(reporter.pending, 3)
  assert.deepEqual(await streamed(), [])
  await proxy.restore()
  await waitFor(async () => ((await streamed()).length === 3 ? true : undefined), { what: 'the kept reports appended', timeoutMs: 20_000 })
  assert.deepEqual(
    (await streamed()).map((r) => r.status),
    ['while down 2', 'while down 3', 'while down 4'],
  )
  assert.equal(reporter.pending, 0)
})

test('one report per dependency transition, however many errors', async () => {
  const reporter = createReporter({ redis: proxied, log, service: 'svc', instance: 'i1' })
  let clock = 1000
  const deps = createDependencyReports(reporter, log, () => clock)
  deps.recovered('postgres')
  deps.lost('postgres', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
  deps.lost('postgres', new Error('again'))
  deps.lost('postgres')
  assert.equal(deps.isLost('postgres'), true)
  assert.equal(deps.isLost('redis'), false)
  clock = 3500
  deps.recovered('postgres')
  deps.recovered('postgres')
  deps.lost('kafka', new Error('broker gone'))
  await reporter.flush()
  const reports = await streamed()
  assert.deepEqual(
    reports.map((r) => [r.level, r.status, r.data]),
    [
      ['error', 'dependency_lost', { dependency: 'postgres', error: 'connect ECONNREFUSED 127.0.0.1:5432' }],
      ['info', 'dependency_recovered', { dependency: 'postgres', down_ms: 2500 }],
      ['error', 'dependency_lost', { dependency: 'kafka', error: 'broker gone' }],
    ],
  )
})
