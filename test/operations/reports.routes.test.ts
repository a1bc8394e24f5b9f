/**
 * The operations API over HTTP (`app.inject`) on the real PostgreSQL, Redis and Kafka:
 * filing reports (admin token and `REPORTS_TOKEN` accepted, user and application tokens
 * refused, every invalid field named), listing them newest first a keyset page at a time
 * with filters, the retention, and `GET /api/status` over real heartbeats.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { sql } from 'kysely'
import { createApp } from '../../src/events/apps.repository.ts'
import { insertReports } from '../../src/operations/index.ts'
import { startHeartbeat } from '../../src/platform/heartbeat.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { daemons } from '../../src/services/daemons.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const REPORTS_TOKEN = 'reports-token-0123456789abcdef'
const MAX_ROWS = 8

let api: TradingApi
let appToken: string
before(async () => {
  api = await openTradingApi({ REPORTS_TOKEN, REPORTS_MAX_ROWS: String(MAX_ROWS), REPORTS_RETENTION_DAYS: '30' })
  appToken = (await createApp(api.testDb.db, 'reports-test-app')).token
})
after(async () => {
  await api.close()
})
beforeEach(async () => {
  await sql`delete from service_reports`.execute(api.testDb.db)
})

interface ErrorBody {
  error: { code: string; message: string; details?: Array<{ field: string; message: string }> }
}
interface ReportBody {
  id: string
  level: string
  service: string
  instance: string | null
  status: string
  data: Record<string, unknown>
  reported_at: string
  received_at: string
  filed_by: string | null
}
interface PageBody {
  items: ReportBody[]
  next_cursor: string | null
}

const errorOf = (res: { json: () => unknown }) => (res.json() as ErrorBody).error

function file(token: string | undefined, body: unknown) {
  return api.app.inject({
    method: 'POST',
    url: '/api/reports',
    headers: { ...(token !== undefined && api.auth(token)), 'content-type': 'application/json' },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

function list(token: string, query = '') {
  return api.app.inject({ method: 'GET', url: `/api/reports${query}`, headers: api.auth(token) })
}

const report = { level: 'warning', service: 'backup', status: 'slow', data: { took_s: 5400 } }

describe('POST /api/reports', () => {
  it('stores a report filed with an admin token, naming the token', async () => {
    const res = await file(api.tokens.admin, { ...report, instance: 'db-1' })
    assert.equal(res.statusCode, 201, res.body)
    const body = res.json() as ReportBody
    assert.equal(body.level, 'warning')
    assert.equal(body.service, 'backup')
    assert.equal(body.instance, 'db-1')
    assert.equal(body.status, 'slow')
    assert.deepEqual(body.data, { took_s: 5400 })
    assert.match(body.id, /^\d+$/)
    assert.ok(Math.abs(Date.parse(body.reported_at) - Date.now()) < 60_000)
    const token = await api.testDb.db.selectFrom('api_tokens').select('id').where('admin', '=', true).executeTakeFirstOrThrow()
    assert.equal(body.filed_by, token.id)
    const row = await api.testDb.db.selectFrom('service_reports').selectAll().executeTakeFirstOrThrow()
    assert.deepEqual(row.data, { took_s: 5400 })
  })

  it('stores a report filed with REPORTS_TOKEN, without data', async () => {
    const res = await file(REPORTS_TOKEN, { level: 'info', service: 'cron.nightly', status: 'done' })
    assert.equal(res.statusCode, 201, res.body)
    const body = res.json() as ReportBody
    assert.equal(body.filed_by, 'reports-token')
    assert.deepEqual(body.data, {})
    assert.equal(body.instance, null)
  })

  it('refuses a request without a token (401), with an unknown one (401), a user token and an application token (403)', async () => {
    const none = await file(undefined, report)
    assert.equal(none.statusCode, 401)
    assert.equal(errorOf(none).code, 'unauthorized')
    const unknown = await file('reports-token-0123456789abcdeX', report)
    assert.equal(unknown.statusCode, 401)
    const user = await file(api.tokens.user1, report)
    assert.equal(user.statusCode, 403)
    assert.equal(errorOf(user).code, 'forbidden')
    const app = await file(appToken, report)
    assert.equal(app.statusCode, 403)
    assert.equal((await api.testDb.db.selectFrom('service_reports').select('id').execute()).length, 0)
  })

  it('refuses invalid bodies with 400 naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{ ...report, level: 'fatal' }, 'body.level'],
      [{ service: 'x', status: 's' }, 'body.level'],
      [{ ...report, service: '' }, 'body.service'],
      [{ ...report, service: 'has space' }, 'body.service'],
      [{ ...report, service: 'x'.repeat(65) }, 'body.service'],
      [{ ...report, status: '' }, 'body.status'],
      [{ ...report, status: 's'.repeat(201) }, 'body.status'],
      [{ ...report, instance: 'i'.repeat(201) }, 'body.instance'],
      [{ ...report, data: [1, 2] }, 'body.data'],
      [{ ...report, data: 'text' }, 'body.data'],
      [{ ...report, data: { big: 'x'.repeat(9000) } }, 'body.data'],
      [{ ...report, data: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, i])) }, 'body.data'],
      [{ ...report, extra: true }, 'body.extra'],
      [{ ...report, status: 'nul\u0000' }, 'body.status'],
    ]
    for (const [body, field] of cases) {
      const res = await file(api.tokens.admin, body)
      assert.equal(res.statusCode, 400, `${JSON.stringify(body).slice(0, 80)}: ${res.body}`)
      const error = errorOf(res)
      assert.equal(error.code, 'validation_failed', res.body)
      assert.ok(
        error.details?.some((d) => d.field === field),
        `${JSON.stringify(body).slice(0, 80)} names ${field}: ${JSON.stringify(error.details)}`,
      )
    }
    const notJson = await file(api.tokens.admin, '{"level":')
    assert.equal(notJson.statusCode, 400)
    assert.equal((await api.testDb.db.selectFrom('service_reports').select('id').execute()).length, 0)
  })
})

/** Stores reports at given times, oldest first. */
async function seed(reports: Array<{ level: 'info' | 'warning' | 'error'; service: string; at: string }>) {
  return insertReports(
    api.testDb.db,
    reports.map((r) => ({
      level: r.level,
      service: r.service,
      instance: null,
      status: 'seeded',
      data: { at: r.at },
      reportedAt: new Date(r.at),
      filedBy: null,
      streamId: null,
    })),
  )
}

describe('GET /api/reports', () => {
  it('needs an admin token: none 401, user 403, REPORTS_TOKEN 401 (it only files)', async () => {
    const none = await api.app.inject({ method: 'GET', url: '/api/reports' })
    assert.equal(none.statusCode, 401)
    assert.equal((await list(api.tokens.user1)).statusCode, 403)
    assert.equal((await list(REPORTS_TOKEN)).statusCode, 401)
    assert.equal((await list(api.tokens.admin)).statusCode, 200)
  })

  it('pages newest first with a cursor, ties broken by id', async () => {
    await seed([
      { level: 'info', service: 'a', at: '2026-01-01T00:00:01.000Z' },
      { level: 'info', service: 'a', at: '2026-01-01T00:00:02.000Z' },
      { level: 'info', service: 'a', at: '2026-01-01T00:00:02.000Z' },
      { level: 'info', service: 'a', at: '2026-01-01T00:00:03.000Z' },
      { level: 'info', service: 'a', at: '2026-01-01T00:00:04.000Z' },
    ])
    const all = await api.testDb.db.selectFrom('service_reports').select(['id', 'reported_at']).execute()
    const expected = all
      .sort((a, b) => b.reported_at.getTime() - a.reported_at.getTime() || Number(BigInt(b.id) - BigInt(a.id)))
      .map((r) => r.id)
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await list(api.tokens.admin, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as PageBody
      assert.ok(page.items.length <= 2)
      seen.push(...page.items.map((r) => r.id))
      cursor = page.next_cursor
      pages++
    } while (cursor !== null)
    assert.equal(pages, 3)
    assert.deepEqual(seen, expected)
  })

  it('filters by level, service and since (inclusive) / until (exclusive), combined', async () => {
    await seed([
      { level: 'info', service: 'api', at: '2026-01-01T00:00:00.000Z' },
      { level: 'error', service: 'api', at: '2026-01-02T00:00:00.000Z' },
      { level: 'error', service: 'verifier', at: '2026-01-03T00:00:00.000Z' },
      { level: 'warning', service: 'verifier', at: '2026-01-04T00:00:00.000Z' },
    ])
    const at = async (query: string) => ((await list(api.tokens.admin, query)).json() as PageBody).items.map((r) => `${r.service}/${r.level}`)
    assert.deepEqual(await at('?level=error'), ['verifier/error', 'api/error'])
    assert.deepEqual(await at('?service=api'), ['api/error', 'api/info'])
    assert.deepEqual(await at('?service=api&level=error'), ['api/error'])
    assert.deepEqual(await at('?since=2026-01-02T00:00:00Z'), ['verifier/warning', 'verifier/error', 'api/error'])
    assert.deepEqual(await at('?until=2026-01-02T00:00:00Z'), ['api/info'])
    assert.deepEqual(await at('?since=2026-01-02T00:00:00Z&until=2026-01-04T00:00:00Z'), ['verifier/error', 'api/error'])
    assert.deepEqual(await at('?since=2026-01-02T00:00:00Z&until=2026-01-04T00:00:00Z&level=error&service=verifier'), ['verifier/error'])
    assert.deepEqual(await at('?service=nobody'), [])
  })

  it('refuses bad queries with 400 naming the field', async () => {
    const cases: Array<[string, string, string]> = [
      ['?level=fatal', 'querystring.level', 'validation_failed'],
      ['?service=a%20b', 'querystring.service', 'validation_failed'],
      ['?since=yesterday', 'querystring.since', 'validation_failed'],
      ['?until=2026-13-01T00:00:00Z', 'querystring.until', 'validation_failed'],
      // Valid syntax, but no instant PostgreSQL holds: refused before it reaches SQL.
      ['?since=0000-01-01T00:00:00Z', 'querystring.since', 'validation_failed'],
      ['?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z', 'querystring.until', 'validation_failed'],
      ['?limit=0', 'querystring.limit', 'validation_failed'],
      ['?limit=201', 'querystring.limit', 'validation_failed'],
      ['?other=1', 'querystring.other', 'validation_failed'],
    ]
    for (const [query, field, code] of cases) {
      const res = await list(api.tokens.admin, query)
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`)
      const error = errorOf(res)
      assert.equal(error.code, code, query)
      assert.ok(error.details?.some((d) => d.field === field), `${query} names ${field}: ${res.body}`)
    }
    const cursor = await list(api.tokens.admin, '?cursor=bm90LW91cnM')
    assert.equal(cursor.statusCode, 400)
    assert.equal(errorOf(cursor).code, 'invalid_cursor')
    const foreign = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'not-a-number'])).toString('base64url')
    assert.equal(errorOf(await list(api.tokens.admin, `?cursor=${foreign}`)).code, 'invalid_cursor')
  })
})

describe('retention', () => {
  it(`keeps the newest ${MAX_ROWS} rows as reports are filed`, async () => {
    const ids: string[] = []
    for (let i = 0; i < MAX_ROWS + 3; i++) {
      const res = await file(api.tokens.admin, { ...report, status: `n${i}` })
      assert.equal(res.statusCode, 201, res.body)
      ids.push((res.json() as ReportBody).id)
    }
    const left = await api.testDb.db.selectFrom('service_reports').select('id').orderBy('id').execute()
    assert.deepEqual(
      left.map((r) => r.id),
      ids.slice(-MAX_ROWS),
    )
  })

  it('deletes reports older than REPORTS_RETENTION_DAYS when the next one is stored', async () => {
    const old = new Date(Date.now() - 31 * 86_400_000).toISOString()
    const recent = new Date(Date.now() - 29 * 86_400_000).toISOString()
    await seed([
      { level: 'info', service: 'old', at: old },
      { level: 'info', service: 'recent', at: recent },
    ])
    assert.equal((await file(api.tokens.admin, report)).statusCode, 201)
    const left = await api.testDb.db.selectFrom('service_reports').select('service').orderBy('id').execute()
    assert.deepEqual(
      left.map((r) => r.service),
      ['recent', 'backup'],
    )
  })
})

describe('GET /api/status', () => {
  it('shows live instances with their status, missing services, consumer lag per group and the newest reports', async () => {
    const log = createLogger({ level: 'silent', pretty: false })
    const beats = [
      await startHeartbeat(api.redis, log, {
        service: 'verifier',
        instance: 'v1',
        version: '1.0.0',
        intervalMs: 60_000,
        status: () => ({ inFlight: 2, group: 'verifier', lag: { orders: 5 } }),
      }),
      await startHeartbeat(api.redis, log, {
        service: 'verifier',
        instance: 'v2',
        version: '1.0.0',
        intervalMs: 60_000,
        status: () => ({ inFlight: 0, group: 'verifier', lag: { orders: 7 } }),
      }),
      await startHeartbeat(api.redis, log, {
        service: 'verifier',
        instance: 'v3',
        version: '1.0.0',
        intervalMs: 60_000,
        status: () => ({ inFlight: 0, group: 'verifier' }),
      }),
      await startHeartbeat(api.redis, log, { service: 'mail-sink', instance: 'm1', version: '1.0.0', intervalMs: 60_000 }),
    ]
    try {
      await seed([
        { level: 'info', service: 'a', at: '2026-01-01T00:00:00.000Z' },
        { level: 'error', service: 'b', at: '2026-01-02T00:00:00.000Z' },
        { level: 'info', service: 'c', at: '2026-01-03T00:00:00.000Z' },
      ])
      const forbidden = await api.app.inject({ method: 'GET', url: '/api/status', headers: api.auth(api.tokens.user1) })
      assert.equal(forbidden.statusCode, 403)
      assert.equal((await api.app.inject({ method: 'GET', url: '/api/status' })).statusCode, 401)
      assert.equal((await api.app.inject({ method: 'GET', url: '/api/status?reports=101', headers: api.auth(api.tokens.admin) })).statusCode, 400)

      const res = await api.app.inject({ method: 'GET', url: '/api/status?reports=2', headers: api.auth(api.tokens.admin) })
      assert.equal(res.statusCode, 200, res.body)
      const body = res.json() as {
        instances: Array<{ service: string; instance: string; pid: number; status: Record<string, unknown> }>
        missing: string[]
        consumer_lag: unknown[]
        reports: ReportBody[]
      }
      assert.deepEqual(
        body.instances.map((i) => `${i.service}/${i.instance}`),
        ['mail-sink/m1', 'verifier/v1', 'verifier/v2', 'verifier/v3'],
      )
      assert.equal(body.instances[1]!.pid, process.pid)
      assert.deepEqual(body.instances[1]!.status, { inFlight: 2, group: 'verifier', lag: { orders: 5 } })
      assert.deepEqual(
        body.missing,
        daemons.filter((d) => d !== 'mail-sink' && d !== 'verifier'),
      )
      assert.deepEqual(body.consumer_lag, [{ group: 'verifier', service: 'verifier', instances: 3, unknown: 1, lag: { orders: 12 } }])
      assert.deepEqual(
        body.reports.map((r) => r.service),
        ['c', 'b'],
      )
    } finally {
      for (const beat of beats) await beat.stop()
    }
  })
})
