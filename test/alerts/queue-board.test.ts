/**
 * The queue board at /admin/queues on `bourse api` (real PostgreSQL and Redis, the test's
 * own BullMQ key prefix): nobody but an admin reaches it (a browser is sent to the sign-in
 * page, other requests get 401 or 403), the sign-in keeps the token in a cookie read only
 * under /admin and only for same-origin changes, and the board lists the alerts' queues
 * with their jobs. Then the board's queues on a bare HTTP app: opened on the first admin
 * request only, closed with the app.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ALERT_QUEUES, RUNS_QUEUE } from '../../src/alerts/index.ts'
import { createApiToken, createTokenAuthenticator, revokeApiToken } from '../../src/auth/index.ts'
import { createHttpApp, type HttpApp } from '../../src/platform/http/app.ts'
import { queueBoardRoutes } from '../../src/platform/http/queue-board.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { openQueue, type OpenQueue, type QueueConnection } from '../../src/platform/queues.ts'
import { openAlertsApi } from '../helpers/alerts-api.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, testConfig, testRedisUrl, uniqueName } from '../helpers/infra.ts'
import type { TradingApi } from '../helpers/trading.ts'

const log = createLogger({ level: 'silent', pretty: false })
const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }
const form = { 'content-type': 'application/x-www-form-urlencoded' }

interface BoardQueue {
  name: string
  counts: Record<string, number>
  isPaused: boolean
}

describe('the queue board of bourse api', () => {
  let api: TradingApi
  let runs: OpenQueue<unknown>
  let cookie: string

  const get = (url: string, headers: Record<string, string> = {}) => api.app.inject({ method: 'GET', url, headers })
  const signIn = (token: string, next?: string) =>
    api.app.inject({
      method: 'POST',
      url: '/admin/login',
      headers: form,
      payload: new URLSearchParams({ token, ...(next !== undefined && { next }) }).toString(),
    })

  before(async () => {
    api = await openAlertsApi()
    runs = openQueue(RUNS_QUEUE, { url: testRedisUrl, prefix: api.config.QUEUE_PREFIX, log })
    await runs.queue.add('run', { alertId: '1', dueAt: 0 }, { jobId: 'alert-1-0' })
  })
  after(async () => {
    await runs?.close()
    await api?.close()
  })

  it('sends a browser without a session to the sign-in page, coming back afterwards', async () => {
    const res = await get('/admin/queues/queue/alerts?status=failed', html)
    assert.equal(res.statusCode, 303)
    assert.equal(res.headers.location, `/admin/login?next=${encodeURIComponent('/admin/queues/queue/alerts?status=failed')}`)
    const page = await get(String(res.headers.location))
    assert.equal(page.statusCode, 200)
    assert.match(page.body, /<form method="post" action="\/admin\/login">/)
    assert.match(page.body, /<input type="hidden" name="next" value="\/admin\/queues\/queue\/alerts\?status=failed">/)
  })

  it('answers 401 to other requests without an admin, 403 to a user token', async () => {
    for (const url of ['/admin/queues', '/admin/queues/api/queues', '/admin/queues/static/js/nothing.js']) {
      const res = await get(url)
      assert.equal(res.statusCode, 401, url)
      assert.equal((res.json() as { error: { code: string } }).error.code, 'unauthorized')
    }
    const user = await get('/admin/queues/api/queues', api.auth(api.tokens.user1))
    assert.equal(user.statusCode, 403)
    assert.equal((user.json() as { error: { code: string } }).error.code, 'forbidden')
    const put = await api.app.inject({ method: 'PUT', url: `/admin/queues/api/queues/${RUNS_QUEUE}/pause` })
    assert.equal(put.statusCode, 401)
  })

  it('shows the board to an admin bearer token, listing the queues of the alerts with their jobs', async () => {
    const page = await get('/admin/queues', api.auth(api.tokens.admin))
    assert.equal(page.statusCode, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(page.body, /<base href="\/admin\/queues\/"/)
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/)
    const res = await get('/admin/queues/api/queues', api.auth(api.tokens.admin))
    assert.equal(res.statusCode, 200, res.body)
    const queues = (res.json() as { queues: BoardQueue[] }).queues
    assert.deepEqual(queues.map((q) => q.name).sort(), [...ALERT_QUEUES].sort())
    assert.equal(queues.find((q) => q.name === RUNS_QUEUE)!.counts.waiting, 1)
    const asset = /src="(static\/js\/main[^"]+)"/.exec(page.body)?.[1]
    assert.ok(asset)
    const script = await get(`/admin/queues/${asset}`, api.auth(api.tokens.admin))
    assert.equal(script.statusCode, 200)
  })

  it('signs an admin in: the token in an HttpOnly SameSite=Strict cookie for /admin, then back to the page asked for', async () => {
    const res = await signIn(api.tokens.admin, '/admin/queues/queue/alerts')
    assert.equal(res.statusCode, 303, res.body)
    assert.equal(res.headers.location, '/admin/queues/queue/alerts')
    const setCookie = String(res.headers['set-cookie'])
    assert.equal(setCookie, `bourse_admin=${api.tokens.admin}; Path=/admin; Max-Age=43200; HttpOnly; SameSite=Strict`)
    cookie = `bourse_admin=${api.tokens.admin}`
    const page = await get('/admin/queues', { ...html, cookie })
    assert.equal(page.statusCode, 200)
    const list = await get('/admin/queues/api/queues', { cookie: `theme=dark; ${cookie}` })
    assert.equal(list.statusCode, 200)
    assert.equal((list.json() as { queues: BoardQueue[] }).queues.length, ALERT_QUEUES.length)
  })

  it('refuses a sign-in with an unknown, a user or an empty token, saying why on the page', async () => {
    const cases: Array<[string, number, RegExp]> = [
      [`bourse_${'x'.repeat(43)}`, 401, /unknown or revoked/],
      ['not a token; at all', 401, /unknown or revoked/],
      [api.tokens.user1, 403, /not an admin token/],
      ['  ', 400, /Enter an admin token/],
    ]
    for (const [token, status, message] of cases) {
      const res = await signIn(token)
      assert.equal(res.statusCode, status, token)
      assert.match(res.body, message)
      assert.equal(res.headers['set-cookie'], undefined)
    }
  })

  it('goes only to a page under /admin after signing in', async () => {
    for (const next of ['https://evil.example/', '//evil.example/admin', '/api/alerts', '/admin\\evil', '/adminx', '/admin/login']) {
      const res = await signIn(api.tokens.admin, next)
      assert.equal(res.headers.location, '/admin/queues', next)
    }
    assert.equal((await signIn(api.tokens.admin)).headers.location, '/admin/queues')
  })

  it('reads the cookie only under /admin, and for a change only from a page of the same origin', async () => {
    assert.equal((await get('/api/alerts', { cookie })).statusCode, 401, 'the JSON API ignores the cookie')
    const pause = (headers: Record<string, string>) =>
      api.app.inject({ method: 'PUT', url: `/admin/queues/api/queues/${RUNS_QUEUE}/pause`, headers: { cookie, host: 'bourse.test', ...headers } })
    const resume = () => api.app.inject({ method: 'PUT', url: `/admin/queues/api/queues/${RUNS_QUEUE}/resume`, headers: api.auth(api.tokens.admin) })
    const refused: Array<Record<string, string>> = [{}, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }, { origin: 'null' }]
    for (const headers of refused) {
      const res = await pause(headers)
      assert.equal(res.statusCode, 401, JSON.stringify(headers))
    }
    assert.equal(await runs.queue.isPaused(), false)
    const allowed: Array<Record<string, string>> = [{ 'sec-fetch-site': 'same-origin' }, { origin: 'http://bourse.test' }]
    for (const headers of allowed) {
      const res = await pause(headers)
      assert.ok(res.statusCode < 300, `${JSON.stringify(headers)}: ${res.statusCode} ${res.body}`)
      assert.equal(await runs.queue.isPaused(), true)
      assert.ok((await resume()).statusCode < 300)
    }
  })

  it('ends the session when the token is revoked, and on sign-out', async () => {
    const { id, token } = await createApiToken(api.testDb.db, { admin: true })
    const own = `bourse_admin=${token}`
    assert.equal((await signIn(token)).statusCode, 303)
    assert.equal((await get('/admin/queues', { ...html, cookie: own })).statusCode, 200)
    await revokeApiToken(api.testDb.db, id)
    const after = await get('/admin/queues', { ...html, cookie: own })
    assert.equal(after.statusCode, 303)
    assert.match(String(after.headers.location), /^\/admin\/login\?next=/)

    const out = await get('/admin/logout', { cookie })
    assert.equal(out.statusCode, 303)
    assert.equal(out.headers.location, '/admin/login')
    assert.equal(String(out.headers['set-cookie']), 'bourse_admin=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict')
  })

  it('keeps the board and the sign-in out of the OpenAPI document', async () => {
    const doc = (await get('/docs/json')).json() as { paths: Record<string, unknown> }
    assert.deepEqual(Object.keys(doc.paths).filter((path) => path.startsWith('/admin')), [])
  })
})

describe("the board's queues", () => {
  let testDb: TestDb
  let adminToken: string
  before(async () => {
    testDb = await openTestDb()
    adminToken = (await createApiToken(testDb.db, { admin: true })).token
  })
  after(async () => {
    await testDb.close()
  })

  it('are opened on the first admin request only, and closed with the app', async () => {
    const redis = await openTestRedis()
    const config = testConfig({ RATE_LIMIT_MAX: '1000', AUTH_CACHE_MS: '0' })
    const opened: string[] = []
    const closed: string[] = []
    const open = (name: string, connection: QueueConnection) => {
      opened.push(name)
      const queue = openQueue(name, connection)
      return { queue: queue.queue, close: async () => {
        closed.push(name)
        await queue.close()
      } }
    }
    let app: HttpApp | undefined
    try {
      app = await createHttpApp(
        { config, log, redis },
        {
          title: 'board test',
          version: '0',
          authenticate: createTokenAuthenticator(testDb.db, { cacheMs: 0 }),
          adminLogin: { landing: '/admin/queues' },
          routes: [queueBoardRoutes({ queues: ['one', 'two'], connection: { url: testRedisUrl, prefix: uniqueName('bull'), log }, open })],
        },
      )
      await app.ready()
      assert.deepEqual(opened, [], 'building the app opens no queue')
      assert.equal((await app.inject({ method: 'GET', url: '/admin/queues/api/queues' })).statusCode, 401)
      assert.deepEqual(opened, [], 'nor does a refused request')
      const res = await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { authorization: `Bearer ${adminToken}` } })
      assert.equal(res.statusCode, 200, res.body)
      assert.deepEqual((res.json() as { queues: BoardQueue[] }).queues.map((q) => q.name), ['one', 'two'])
      await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { authorization: `Bearer ${adminToken}` } })
      assert.deepEqual(opened, ['one', 'two'], 'opened once')
      await app.close()
      app = undefined
      assert.deepEqual(closed, ['one', 'two'])
    } finally {
      await app?.close()
      await closeTestRedis(redis)
    }
  })
})
