import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createServer } from 'node:net'
import { sql } from 'kysely'
import { Redis as RedisClient, type Redis } from 'ioredis'
import { pino } from 'pino'
import Type from 'typebox'
import { createApiToken, createTokenAuthenticator } from '../../../src/auth/index.ts'
import { createHttpApp, type HttpApp, type HttpAppOptions, type RoutePlugin } from '../../../src/platform/http/app.ts'
import { principalOf, requireAuth } from '../../../src/platform/http/auth.ts'
import { Conflict, ServiceUnavailable } from '../../../src/platform/http/errors.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { closeTestRedis, openTestRedis, testConfig } from '../../helpers/infra.ts'

let redis: Redis

interface HealthBody {
  status: 'pass' | 'fail'
  checks: Record<string, Array<{ status: string; observedValue: number; observedUnit: string; time: string; output?: string }>>
}

/** A local port that was free a moment ago and has no listener now. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
let testDb: TestDb
const apps: HttpApp[] = []
/** What the apps logged, one JSON line each. */
const logLines: string[] = []

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
  await testDb.db
    .insertInto('users')
    .values([
      { id: 'user1', credit: '100', webhook_secret: 'whsec_dGVzdA==' },
      { id: 'user2', credit: '100', webhook_secret: 'whsec_dGVzdA==' },
    ])
    .execute()
})
after(async () => {
  for (const app of apps) await app.close()
  await testDb.close()
  await closeTestRedis(redis)
})

const testRoutes: RoutePlugin = async (app) => {
  app.post(
    '/orders',
    {
      schema: {
        body: Type.Object(
          { stock: Type.String({ minLength: 1 }), quantity: Type.Integer({ minimum: 1 }) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ stock: Type.String(), quantity: Type.Integer() }) },
      },
    },
    async (request, reply) => reply.code(201).send(request.body),
  )
  app.get(
    '/items',
    { schema: { querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 100 }) }, { additionalProperties: false }) } },
    async (request) => ({ limit: request.query.limit, type: typeof request.query.limit }),
  )
  app.get('/items/:id', { schema: { params: Type.Object({ id: Type.Integer() }) } }, async (request) => ({ id: request.params.id }))
  app.post(
    '/labels',
    { schema: { body: Type.Object({ label: Type.String({ maxLength: 4 }) }) } },
    async (request) => ({ length: request.body.label.length }),
  )
  // A shared schema, referenced by $id from a body.
  app.addSchema({ $id: 'StockName', type: 'string', pattern: '^stock\\d+$' })
  app.post(
    '/baskets',
    {
      schema: {
        body: Type.Object(
          { items: Type.Array(Type.Object({ stock: Type.Ref('StockName'), price: Type.Number() }, { additionalProperties: false })) },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => ({ count: request.body.items.length }),
  )
  app.get('/boom', async () => {
    throw new Error('secret detail')
  })
  app.get('/conflict', async () => {
    throw new Conflict('that key was used for another order', { idempotencyKey: 'k1' })
  })
  app.get('/unavailable', async () => {
    throw new ServiceUnavailable('the market is closed', 7)
  })
  app.get('/me', { onRequest: requireAuth }, async (request) => principalOf(request))
}

async function build(env: Record<string, string> = {}, options: Partial<HttpAppOptions> = {}): Promise<HttpApp> {
  const config = testConfig({ RATE_LIMIT_MAX: '1000', ...env })
  const log = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) })
  const app = await createHttpApp(
    { config, log, redis },
    {
      title: 'Bourse test',
      version: '0.0.0',
      routes: [testRoutes],
      authenticate: createTokenAuthenticator(testDb.db, { cacheMs: 0 }),
      ...options,
    },
  )
  apps.push(app)
  return app
}

describe('errors and validation', () => {
  let app: HttpApp
  before(async () => {
    app = await build({ BODY_LIMIT_BYTES: '1024' })
  })

  test('a valid body passes', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: { stock: 'stock1', quantity: 5 } })
    assert.equal(res.statusCode, 201)
    assert.deepEqual(res.json(), { stock: 'stock1', quantity: 5 })
  })

  test('string lengths are counted in UTF-16 code units, and Ajv says nothing about it', async () => {
    const send = (label: string) => app.inject({ method: 'POST', url: '/labels', payload: { label } })
    assert.equal((await send('abcd')).statusCode, 200)
    assert.equal((await send('😀😀')).statusCode, 200, 'two emoji are four code units')
    for (const label of ['abcde', '😀😀😀', 'ééééé']) {
      const res = await send(label)
      assert.equal(res.statusCode, 400, label)
      assert.equal(res.json().error.details[0].field, 'body.label')
    }
    assert.ok(!logLines.some((line) => line.includes('DEPRECATED')), 'no deprecation warning in the log')
  })

  test('a JSON body is not coerced: "5" for an integer is a 400 naming the field', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: { stock: 'stock1', quantity: '5' } })
    assert.equal(res.statusCode, 400)
    const { error } = res.json()
    assert.equal(error.code, 'validation_failed')
    assert.deepEqual(error.details, [{ field: 'body.quantity', message: 'must be integer' }])
    assert.match(error.message, /body\.quantity/)
  })

  test('unknown fields are rejected, not dropped, and named', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: { stock: 'stock1', quantity: 1, price: 3 } })
    assert.equal(res.statusCode, 400)
    assert.deepEqual(res.json().error.details, [{ field: 'body.price', message: 'is not allowed' }])
  })

  test('every wrong field is listed, a missing one by name', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: { quantity: 0, extra: true } })
    assert.equal(res.statusCode, 400)
    const fields = (res.json().error.details as Array<{ field: string; message: string }>).map((d) => `${d.field} ${d.message}`)
    assert.deepEqual(fields.sort(), ['body.extra is not allowed', 'body.quantity must be >= 1', 'body.stock is required'])
  })

  test('nested fields are named with their index; shared schemas apply', async () => {
    const ok = await app.inject({ method: 'POST', url: '/baskets', payload: { items: [{ stock: 'stock1', price: 1 }] } })
    assert.equal(ok.statusCode, 200, ok.body)
    const res = await app.inject({
      method: 'POST',
      url: '/baskets',
      payload: { items: [{ stock: 'stock1', price: 1 }, { stock: 'apple', price: '2' }] },
    })
    assert.equal(res.statusCode, 400)
    assert.deepEqual(res.json().error.details, [
      { field: 'body.items[1].stock', message: 'must match pattern "^stock\\d+$"' },
      { field: 'body.items[1].price', message: 'must be number' },
    ])
  })

  test('querystring and params integers are coerced from text, and checked', async () => {
    const ok = await app.inject({ method: 'GET', url: '/items?limit=5' })
    assert.equal(ok.statusCode, 200)
    assert.deepEqual(ok.json(), { limit: 5, type: 'number' })
    for (const bad of ['2.5', 'abc', '0']) {
      const res = await app.inject({ method: 'GET', url: `/items?limit=${bad}` })
      assert.equal(res.statusCode, 400, bad)
      assert.equal(res.json().error.details[0].field, 'querystring.limit')
    }
    const extra = await app.inject({ method: 'GET', url: '/items?limit=5&sort=asc' })
    assert.deepEqual(extra.json().error.details, [{ field: 'querystring.sort', message: 'is not allowed' }])
    assert.deepEqual((await app.inject({ method: 'GET', url: '/items/7' })).json(), { id: 7 })
    const badParam = await app.inject({ method: 'GET', url: '/items/x' })
    assert.equal(badParam.statusCode, 400)
    assert.equal(badParam.json().error.details[0].field, 'params.id')
  })

  test('malformed and empty JSON are 400 malformed_json', async () => {
    for (const payload of ['{"stock":', '']) {
      const res = await app.inject({ method: 'POST', url: '/orders', payload, headers: { 'content-type': 'application/json' } })
      assert.equal(res.statusCode, 400, JSON.stringify(payload))
      assert.equal(res.json().error.code, 'malformed_json')
    }
  })

  test('a body that is not JSON is 415', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: 'stock1 5', headers: { 'content-type': 'text/plain' } })
    assert.equal(res.statusCode, 415)
    assert.equal(res.json().error.code, 'unsupported_media_type')
  })

  test('a body over BODY_LIMIT_BYTES is 413', async () => {
    const res = await app.inject({ method: 'POST', url: '/orders', payload: { stock: 'x'.repeat(2000), quantity: 1 } })
    assert.equal(res.statusCode, 413)
    assert.deepEqual(res.json().error, {
      code: 'payload_too_large',
      message: 'the body is larger than 1024 bytes',
      details: { limitBytes: 1024 },
    })
  })

  test('an unknown route is 404 not_found', async () => {
    const res = await app.inject({ method: 'GET', url: '/nowhere?x=1' })
    assert.equal(res.statusCode, 404)
    assert.deepEqual(res.json(), { error: { code: 'not_found', message: 'no route GET /nowhere' } })
  })

  test('an unexpected error is a 500 that hides its message and stack, which go to the log', async () => {
    const res = await app.inject({ method: 'GET', url: '/boom' })
    assert.equal(res.statusCode, 500)
    assert.deepEqual(res.json(), { error: { code: 'internal', message: 'internal error; it has been logged' } })
    assert.doesNotMatch(res.body, /secret detail|at .*\.ts:\d+/)
    const logged = logLines.map((line) => JSON.parse(line)).find((entry) => entry.err?.message === 'secret detail')
    assert.ok(logged, 'the real error is logged')
    assert.equal(logged.level, 50)
    assert.match(logged.err.stack, /app\.test\.ts/)
  })

  test('an AppError answers with its status, code, message, details and headers', async () => {
    const conflict = await app.inject({ method: 'GET', url: '/conflict' })
    assert.equal(conflict.statusCode, 409)
    assert.deepEqual(conflict.json(), {
      error: { code: 'conflict', message: 'that key was used for another order', details: { idempotencyKey: 'k1' } },
    })
    const unavailable = await app.inject({ method: 'GET', url: '/unavailable' })
    assert.equal(unavailable.statusCode, 503)
    assert.equal(unavailable.headers['retry-after'], '7')
    assert.equal(unavailable.json().error.code, 'service_unavailable')
  })
})

describe('health', () => {
  test('GET /health pings Redis', async () => {
    const app = await build()
    const res = await app.inject({ method: 'GET', url: '/health' })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), { status: 'ok' })
  })

  test('a failing dependency makes it 503 with Retry-After', async () => {
    const app = await build({}, { healthChecks: { postgres: () => Promise.reject(new Error('connection refused')) } })
    const res = await app.inject({ method: 'GET', url: '/health' })
    assert.equal(res.statusCode, 503)
    assert.equal(res.headers['retry-after'], '5')
    assert.deepEqual(res.json(), { error: { code: 'service_unavailable', message: 'unavailable: postgres' } })
  })

  test('GET /livez answers pass as application/health+json without asking any dependency', async () => {
    let asked = 0
    const app = await build({}, { healthChecks: { postgres: async () => void asked++ } })
    const res = await app.inject({ method: 'GET', url: '/livez' })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^application\/health\+json/)
    assert.deepEqual(res.json(), { status: 'pass' })
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    assert.equal(asked, 0)
  })

  test('GET /readyz gives each dependency its status and latency in ms', async () => {
    const app = await build({}, {
      healthChecks: { postgres: () => sql`select 1`.execute(testDb.db) },
      readinessChecks: { kafka: async () => undefined },
    })
    const res = await app.inject({ method: 'GET', url: '/readyz' })
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-type']), /^application\/health\+json/)
    const body = res.json() as HealthBody
    assert.equal(body.status, 'pass')
    assert.deepEqual(Object.keys(body.checks).sort(), ['kafka:responseTime', 'postgres:responseTime', 'redis:responseTime'])
    for (const [name, [check]] of Object.entries(body.checks)) {
      assert.equal(check?.status, 'pass', name)
      assert.equal(check?.observedUnit, 'ms', name)
      assert.ok(typeof check?.observedValue === 'number' && check.observedValue >= 0, name)
      assert.ok(!Number.isNaN(Date.parse(check?.time ?? '')), name)
    }
    // /health keeps its own answer and leaves the readiness-only checks out.
    const failingKafka = await build({}, { readinessChecks: { kafka: () => Promise.reject(new Error('down')) } })
    assert.equal((await failingKafka.inject({ method: 'GET', url: '/health' })).statusCode, 200)
    const notReady = await failingKafka.inject({ method: 'GET', url: '/readyz' })
    assert.equal(notReady.statusCode, 503)
    assert.equal((notReady.json() as HealthBody).checks['kafka:responseTime']?.[0]?.status, 'fail')
  })

  test('GET /readyz answers 503 naming Redis when it is down, and a slow check fails at the timeout', async () => {
    // A client of a port nothing listens on, refusing commands instead of queueing them.
    const down = new RedisClient({ host: '127.0.0.1', port: await closedPort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    const config = testConfig({ RATE_LIMIT_MAX: '1000' })
    const app = await createHttpApp(
      { config, log: pino({ level: 'silent' }), redis: down },
      {
        title: 'Bourse test',
        version: '0.0.0',
        healthChecks: { postgres: () => sql`select 1`.execute(testDb.db), slow: () => new Promise(() => {}) },
        healthTimeoutMs: 300,
      },
    )
    apps.push(app)
    const res = await app.inject({ method: 'GET', url: '/readyz' })
    assert.equal(res.statusCode, 503)
    assert.match(String(res.headers['content-type']), /^application\/health\+json/)
    const body = res.json() as HealthBody
    assert.equal(body.status, 'fail')
    assert.equal(body.checks['redis:responseTime']?.[0]?.status, 'fail')
    assert.equal(body.checks['postgres:responseTime']?.[0]?.status, 'pass')
    const slow = body.checks['slow:responseTime']?.[0]
    assert.equal(slow?.status, 'fail')
    assert.equal(slow?.output, 'no answer within 300 ms')
    assert.ok((slow?.observedValue ?? 0) >= 290)
    assert.doesNotMatch(res.body, /ECONNREFUSED|127\.0\.0\.1/, 'driver messages stay in the log')
    down.disconnect()
  })
})

describe('rate limit', () => {
  let app: HttpApp
  before(async () => {
    app = await build({ RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' })
  })

  test('after RATE_LIMIT_MAX requests an address gets 429 with Retry-After, counted in Redis under bourse:rl:', async () => {
    const remoteAddress = '10.1.0.1'
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'GET', url: '/items?limit=1', remoteAddress })
      assert.equal(res.statusCode, 200, `request ${i + 1}`)
      assert.equal(res.headers['x-ratelimit-remaining'], String(2 - i))
    }
    const limited = await app.inject({ method: 'GET', url: '/items?limit=1', remoteAddress })
    assert.equal(limited.statusCode, 429)
    const retryAfter = Number(limited.headers['retry-after'])
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    assert.equal(limited.json().error.code, 'rate_limited')
    assert.deepEqual(limited.json().error.details, { retryAfterSeconds: retryAfter })
    // Unknown routes count too, so scanning is limited as well.
    assert.equal((await app.inject({ method: 'GET', url: '/nowhere', remoteAddress })).statusCode, 429)
    assert.equal(await redis.get('bourse:rl:ip:10.1.0.1'), '5')
  })

  test('requests of one caller arriving at once: exactly RATE_LIMIT_MAX pass', async () => {
    const remoteAddress = '10.3.0.1'
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => app.inject({ method: 'GET', url: '/items?limit=1', remoteAddress })),
    )
    const statuses = answers.map((res) => res.statusCode).sort()
    assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429])
    const remaining = answers.filter((res) => res.statusCode === 200).map((res) => res.headers['x-ratelimit-remaining'])
    assert.deepEqual(remaining.sort(), ['0', '1', '2'])
    assert.equal(await redis.get('bourse:rl:ip:10.3.0.1'), '10')
  })

  test('/health and /docs are exempt', async () => {
    const remoteAddress = '10.1.0.1'
    assert.equal((await app.inject({ method: 'GET', url: '/health', remoteAddress })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/docs/json', remoteAddress })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/docs', remoteAddress })).statusCode, 200)
  })

  test('each valid token has its own limit; made-up tokens count against the address', async () => {
    const remoteAddress = '10.2.0.1'
    const a = await createApiToken(testDb.db, { userId: 'user1' })
    const b = await createApiToken(testDb.db, { userId: 'user2' })
    const call = (token?: string) =>
      app.inject({
        method: 'GET',
        url: '/me',
        remoteAddress,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      })
    for (let i = 0; i < 3; i++) assert.equal((await call(a.token)).statusCode, 200)
    assert.equal((await call(a.token)).statusCode, 429)
    // Same address, other token: its own budget.
    assert.equal((await call(b.token)).statusCode, 200)
    // The address itself is untouched by token traffic...
    for (let i = 0; i < 3; i++) {
      const made = `bourse_${String(i).repeat(43)}`
      assert.equal((await call(made)).statusCode, 401, 'a made-up token is refused')
    }
    // ...and made-up tokens all share the address's budget instead of getting one each.
    assert.equal((await call(`bourse_${'9'.repeat(43)}`)).statusCode, 429)
    assert.equal((await call()).statusCode, 429)
    const keys = await redis.keys('bourse:rl:*')
    assert.ok(keys.some((key) => /^bourse:rl:token:[0-9a-f-]{36}$/.test(key)), keys.join(', '))
    assert.ok(keys.every((key) => !key.includes(a.token) && !key.includes(b.token)), 'no token in a key')
  })
})

describe('rate-limit budget chosen by the service', () => {
  test('rateLimitMax gets the principal (null without a valid token) and sets its budget', async () => {
    const seen: Array<string | null> = []
    const app = await build(
      { RATE_LIMIT_MAX: '1000', RATE_LIMIT_WINDOW_MS: '60000' },
      {
        rateLimitMax: (principal) => {
          seen.push(principal?.userId ?? null)
          return principal?.userId === 'user2' ? 4 : 2
        },
      },
    )
    const remoteAddress = '10.4.0.1'
    const small = await createApiToken(testDb.db, { userId: 'user1' })
    const large = await createApiToken(testDb.db, { userId: 'user2' })
    const call = (token?: string) =>
      app.inject({ method: 'GET', url: '/me', remoteAddress, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
    const statuses = async (token: string | undefined, n: number) => {
      const out: number[] = []
      for (let i = 0; i < n; i++) out.push((await call(token)).statusCode)
      return out
    }
    assert.deepEqual(await statuses(small.token, 3), [200, 200, 429])
    assert.deepEqual(await statuses(large.token, 5), [200, 200, 200, 200, 429])
    assert.deepEqual(await statuses(undefined, 3), [401, 401, 429])
    assert.ok(seen.includes('user1') && seen.includes('user2') && seen.includes(null), seen.join(', '))
  })
})

describe('documentation and security headers', () => {
  test('/docs serves Swagger UI and /docs/json the OpenAPI document, with security headers', async () => {
    const app = await build()
    const ui = await app.inject({ method: 'GET', url: '/docs' })
    assert.equal(ui.statusCode, 200)
    assert.match(String(ui.headers['content-type']), /text\/html/)
    const csp = String(ui.headers['content-security-policy'])
    assert.match(csp, /script-src 'self'/)
    assert.doesNotMatch(csp, /upgrade-insecure-requests/)
    assert.equal(ui.headers['x-content-type-options'], 'nosniff')
    assert.equal(ui.headers['x-frame-options'], 'SAMEORIGIN')
    // The UI's scripts come from the same origin, which the policy allows.
    for (const src of ui.body.matchAll(/<script src="([^"]+)"/g)) {
      const url = new URL(src[1]!, 'http://localhost/docs').pathname
      assert.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
    }

    const spec = await app.inject({ method: 'GET', url: '/docs/json' })
    assert.equal(spec.statusCode, 200)
    assert.ok(spec.headers['content-security-policy'])
    const doc = spec.json()
    assert.equal(doc.openapi, '3.1.0')
    assert.equal(doc.info.title, 'Bourse test')
    assert.deepEqual(doc.components.securitySchemes.bearer, {
      type: 'http',
      scheme: 'bearer',
      description: 'An API token, `bourse_...` (create one with `bourse tokens create USER`)',
    })
    assert.deepEqual(doc.paths['/me'].get.security, [{ bearer: [] }])
    // A route without requireAuth says so, and every route gets an operationId and a client error.
    assert.deepEqual(doc.paths['/orders'].post.security, [])
    assert.equal(doc.paths['/orders'].post.operationId, 'postOrders')
    assert.equal(doc.paths['/items/{id}'].get.operationId, 'getItemsById')
    assert.ok(doc.paths['/items/{id}'].get.responses['4XX'])
    assert.deepEqual(doc.servers, [{ url: '/', description: 'The server this document is served from' }])
    assert.ok(doc.paths['/health'])

    const api = await app.inject({ method: 'GET', url: '/health' })
    assert.equal(api.headers['x-content-type-options'], 'nosniff')
    assert.ok(api.headers['strict-transport-security'])
  })
})
