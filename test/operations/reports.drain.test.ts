/**
 * Moving the services' reports from the Redis stream into PostgreSQL (the real ones):
 * in order, malformed entries skipped, each entry stored once however many drains move it
 * (two API instances, a restart), resuming after the newest entry stored, and the
 * retention applied after each batch.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { sql } from 'kysely'
import { parseStreamEntry, startReportsDrain } from '../../src/operations/index.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { appendReport, REPORTS_STREAM, type ServiceReport } from '../../src/platform/reports.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, waitFor } from '../helpers/infra.ts'

const log = createLogger({ level: 'silent', pretty: false })
const retention = { maxRows: 1000, maxAgeDays: 30 }
let redis: Redis
let testDb: TestDb

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
})
after(async () => {
  await closeTestRedis(redis)
  await testDb.close()
})
beforeEach(async () => {
  await redis.del(REPORTS_STREAM)
  await sql`delete from service_reports`.execute(testDb.db)
})

function report(status: string, extra: Partial<ServiceReport> = {}): ServiceReport {
  return { level: 'info', service: 'mail-sink', instance: 'host-1', status, data: { n: status }, at: new Date().toISOString(), ...extra }
}

async function stored() {
  return testDb.db.selectFrom('service_reports').selectAll().orderBy('id').execute()
}

test('moves every entry in order, skipping malformed ones, with the time the service gave', async () => {
  const at = new Date(Date.now() - 3_600_000).toISOString()
  await appendReport(redis, report('started', { at }))
  await redis.xadd(REPORTS_STREAM, '*', 'report', 'not json')
  await redis.xadd(REPORTS_STREAM, '*', 'other', '{}')
  await appendReport(redis, report('bad level', { level: 'fatal' as never }))
  await appendReport(redis, report('dependency_lost', { level: 'error', data: { dependency: 'redis' } }))
  await appendReport(redis, report('huge', { data: { blob: 'x'.repeat(10_000) } }))
  await appendReport(redis, report('nul', { data: { text: 'a\u0000b' } }))
  const drain = startReportsDrain({ db: testDb.db, redis, log, retention, intervalMs: 0 })
  try {
    assert.equal(await drain.runOnce(), 3)
    assert.equal(await drain.runOnce(), 0)
  } finally {
    await drain.close()
  }
  const rows = await stored()
  assert.deepEqual(
    rows.map((r) => [r.level, r.service, r.instance, r.status, r.filed_by]),
    [
      ['info', 'mail-sink', 'host-1', 'started', null],
      ['error', 'mail-sink', 'host-1', 'dependency_lost', null],
      ['info', 'mail-sink', 'host-1', 'huge', null],
    ],
  )
  assert.equal(rows[0]!.reported_at.toISOString(), at)
  assert.deepEqual(rows[1]!.data, { dependency: 'redis' })
  assert.deepEqual(rows[2]!.data, { truncated: true, bytes: Buffer.byteLength(JSON.stringify({ blob: 'x'.repeat(10_000) })) })
})

test('an entry is stored once: two drains at once, then a new one resuming after the newest stored', async () => {
  for (let i = 0; i < 120; i++) await appendReport(redis, report(`n${i}`))
  const a = startReportsDrain({ db: testDb.db, redis, log, retention, intervalMs: 0, batchSize: 7 })
  const b = startReportsDrain({ db: testDb.db, redis, log, retention, intervalMs: 0, batchSize: 11 })
  const [byA, byB] = await Promise.all([a.runOnce(), b.runOnce()])
  assert.equal(byA + byB, 120)
  await Promise.all([a.close(), b.close()])
  assert.deepEqual(
    (await stored()).map((r) => r.status).sort(),
    Array.from({ length: 120 }, (_, i) => `n${i}`).sort(),
  )

  await appendReport(redis, report('after restart'))
  const c = startReportsDrain({ db: testDb.db, redis, log, retention, intervalMs: 0 })
  try {
    assert.equal(await c.runOnce(), 1)
  } finally {
    await c.close()
  }
  const rows = await stored()
  assert.equal(rows.length, 121)
  assert.equal(rows.at(-1)!.status, 'after restart')
})

test('moves by itself every interval and applies the retention after a batch', async () => {
  const drain = startReportsDrain({ db: testDb.db, redis, log, retention: { maxRows: 3, maxAgeDays: 30 }, intervalMs: 50 })
  try {
    for (let i = 0; i < 5; i++) await appendReport(redis, report(`n${i}`))
    const statuses = async () => (await stored()).map((r) => r.status).join()
    await waitFor(async () => (await statuses()) === 'n2,n3,n4', { what: 'the newest 3 of 5 reports stored', timeoutMs: 20_000 })
  } finally {
    await drain.close()
  }
})

test('parseStreamEntry names what is wrong', () => {
  const ok = parseStreamEntry('1700000000000-3', ['report', JSON.stringify(report('x', { at: 'garbage' }))])
  assert.ok(!('invalid' in ok))
  // A report without a valid time of its own gets the time Redis took it.
  assert.equal(ok.reportedAt.getTime(), 1700000000000)
  assert.equal(ok.streamId, '1700000000000-3')
  assert.deepEqual(parseStreamEntry('1-0', ['report', JSON.stringify(report('x', { service: 'a b' }))]), { invalid: 'service' })
  assert.deepEqual(parseStreamEntry('1-0', ['report', JSON.stringify(report(''))]), { invalid: 'status' })
  assert.deepEqual(parseStreamEntry('1-0', ['report', '[1]']), { invalid: 'not an object' })
  assert.deepEqual(parseStreamEntry('1-0', ['report', JSON.stringify(report('x', { at: '0000-01-01T00:00:00Z' }))]), { invalid: 'at' })
})
