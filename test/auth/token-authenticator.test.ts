import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import Type from 'typebox'
import { createApiToken, createTokenAuthenticator, revokeApiToken } from '../../src/auth/index.ts'
import { closeDb, createDb } from '../../src/platform/db/index.ts'
import type { Database } from '../../src/database.ts'
import { createHttpApp, type HttpApp, type RoutePlugin } from '../../src/platform/http/app.ts'
import { assertActsFor, type Authenticate, principalOf, requireAuth } from '../../src/platform/http/auth.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testConfig, testRedisUrl } from '../helpers/infra.ts'

let testDb: TestDb
// Not flushed: this file only touches the rate-limit keys of its own address and deletes
// them after, so it can run next to files that use the same test database.
let redis: Redis
const remoteAddress = '10.77.0.1'
/** The rate-limit keys of this file's tokens. */
const ownTokenKeys = new Set<string>()
const apps: HttpApp[] = []

before(async () => {
  testDb = await openTestDb()
  redis = new Redis(testRedisUrl, { maxRetriesPerRequest: 3 })
  await testDb.db
    .insertInto('users')
    .values([
      { id: 'user1', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
      { id: 'user2', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
    ])
    .execute()
})
after(async () => {
  for (const app of apps) await app.close()
  await redis.del(`bourse:rl:ip:${remoteAddress}`, ...ownTokenKeys)
  await redis.quit()
  await testDb.close()
})

const routes: RoutePlugin = async (app) => {
  app.get(
    '/users/:userId/portfolio',
    { onRequest: requireAuth, schema: { params: Type.Object({ userId: Type.String() }) } },
    async (request) => {
      const principal = principalOf(request)
      assertActsFor(principal, request.params.userId)
      return { user: request.params.userId, principal }
    },
  )
  app.get('/public', async (request) => ({ principal: request.principal }))
}

async function build(authenticate: Authenticate): Promise<HttpApp> {
  const app = await createHttpApp(
    { config: testConfig({ RATE_LIMIT_MAX: '10000' }), log: createLogger({ level: 'silent', pretty: false }), redis },
    { title: 'auth test', version: '0', routes: [routes], authenticate },
  )
  apps.push(app)
  return app
}

async function token(owner: { userId: string } | { admin: true }): Promise<{ id: string; token: string }> {
  const created = await createApiToken(testDb.db, owner)
  ownTokenKeys.add(`bourse:rl:token:${createHash('sha256').update(created.token).digest('hex')}`)
  return created
}

describe('requireAuth and assertActsFor through the app', () => {
  let app: HttpApp
  before(async () => {
    app = await build(createTokenAuthenticator(testDb.db, { cacheMs: testConfig({ AUTH_CACHE_MS: '0' }).AUTH_CACHE_MS }))
  })
  const get = (url: string, bearer?: string) =>
    app.inject({ method: 'GET', url, remoteAddress, headers: bearer === undefined ? {} : { authorization: `Bearer ${bearer}` } })

  test('no token is 401 unauthorized with WWW-Authenticate: Bearer', async () => {
    const res = await get('/users/user1/portfolio')
    assert.equal(res.statusCode, 401)
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="bourse"')
    assert.deepEqual(res.json(), { error: { code: 'unauthorized', message: 'a bearer token is required' } })
  })

  test('an unknown or malformed token is 401 invalid_token', async () => {
    for (const bad of ['nonsense', `bourse_${'A'.repeat(43)}`]) {
      const res = await get('/users/user1/portfolio', bad)
      assert.equal(res.statusCode, 401)
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="bourse", error="invalid_token"')
      assert.equal(res.json().error.code, 'unauthorized')
    }
    const basic = await app.inject({ method: 'GET', url: '/users/user1/portfolio', remoteAddress, headers: { authorization: 'Basic dXNlcjE6eA==' } })
    assert.equal(basic.statusCode, 401)
  })

  test('a user token acts for its user, and is 403 forbidden for another', async () => {
    const t = await token({ userId: 'user1' })
    const own = await get('/users/user1/portfolio', t.token)
    assert.equal(own.statusCode, 200)
    assert.deepEqual(own.json(), { user: 'user1', principal: { tokenId: t.id, userId: 'user1', admin: false } })
    const other = await get('/users/user2/portfolio', t.token)
    assert.equal(other.statusCode, 403)
    assert.equal(other.json().error.code, 'forbidden')
    assert.match(other.json().error.message, /"user2"/)
  })

  test('an admin token acts for anyone', async () => {
    const t = await token({ admin: true })
    for (const user of ['user1', 'user2']) {
      const res = await get(`/users/${user}/portfolio`, t.token)
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.json().principal, { tokenId: t.id, userId: null, admin: true })
    }
  })

  test('a revoked token is 401 on the next request (AUTH_CACHE_MS 0)', async () => {
    const t = await token({ userId: 'user2' })
    assert.equal((await get('/users/user2/portfolio', t.token)).statusCode, 200)
    assert.equal(await revokeApiToken(testDb.db, t.id), 'revoked')
    const res = await get('/users/user2/portfolio', t.token)
    assert.equal(res.statusCode, 401)
    assert.match(String(res.headers['www-authenticate']), /invalid_token/)
  })

  test('public routes ignore a bad token and see the principal of a good one', async () => {
    const bad = await get('/public', 'nonsense')
    assert.equal(bad.statusCode, 200)
    assert.deepEqual(bad.json(), { principal: null })
    const t = await token({ userId: 'user1' })
    assert.deepEqual((await get('/public', t.token)).json(), { principal: { tokenId: t.id, userId: 'user1', admin: false } })
  })

  test('the OpenAPI document marks routes with requireAuth as needing a bearer token', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
    assert.deepEqual(doc.paths['/users/{userId}/portfolio'].get.security, [{ bearer: [] }])
    // A route without requireAuth says explicitly that it needs no credentials.
    assert.deepEqual(doc.paths['/public'].get.security, [])
  })
})

test('a failing token lookup is 503, not 401 or 500', async () => {
  const app = await build(async () => {
    throw new Error('connection refused')
  })
  const res = await app.inject({
    method: 'GET',
    url: '/users/user1/portfolio',
    remoteAddress,
    headers: { authorization: `Bearer bourse_${'B'.repeat(43)}` },
  })
  assert.equal(res.statusCode, 503)
  assert.equal(res.json().error.code, 'service_unavailable')
  assert.equal(res.headers['retry-after'], '5')
})

describe('the token cache', () => {
  test('a lookup is trusted for cacheMs, then asked again', async () => {
    let now = 1_000_000
    const authenticate = createTokenAuthenticator(testDb.db, { cacheMs: 5000, now: () => now })
    const t = await token({ userId: 'user1' })
    assert.deepEqual(await authenticate(t.token), { tokenId: t.id, userId: 'user1', admin: false })
    await revokeApiToken(testDb.db, t.id)
    now += 4999
    assert.equal((await authenticate(t.token))?.tokenId, t.id, 'still cached: no query')
    now += 1
    assert.equal(await authenticate(t.token), undefined, 'expired: asked again, and revoked')
  })

  test('unknown tokens are cached too, and clear() forgets everything', async () => {
    const now = 0
    const authenticate = createTokenAuthenticator(testDb.db, { cacheMs: 60_000, now: () => now })
    const t = await token({ userId: 'user2' })
    await revokeApiToken(testDb.db, t.id)
    assert.equal(await authenticate(t.token), undefined)
    await testDb.db.updateTable('api_tokens').set({ revoked_at: null }).where('id', '=', t.id).execute()
    assert.equal(await authenticate(t.token), undefined, 'the negative answer is cached')
    authenticate.clear()
    assert.equal((await authenticate(t.token))?.tokenId, t.id)
    await revokeApiToken(testDb.db, t.id)
  })

  test('the cache is bounded: the oldest lookup is dropped first', async () => {
    const authenticate = createTokenAuthenticator(testDb.db, { cacheMs: 60_000, maxEntries: 2, now: () => 0 })
    const [a, b, c] = [await token({ userId: 'user1' }), await token({ userId: 'user1' }), await token({ userId: 'user1' })]
    for (const t of [a, b, c]) assert.equal((await authenticate(t.token))?.tokenId, t.id)
    for (const t of [a, b, c]) await revokeApiToken(testDb.db, t.id)
    assert.equal(await authenticate(a.token), undefined, 'a was evicted by c, so it was asked again')
    assert.equal((await authenticate(c.token))?.tokenId, c.id, 'c is still cached')
  })

  test('concurrent lookups of one token share a query, and a failed query is not cached', async () => {
    const t = await token({ userId: 'user1' })
    const authenticate = createTokenAuthenticator(testDb.db, { cacheMs: 60_000, now: () => 0 })
    const [first, second] = [authenticate(t.token), authenticate(t.token)]
    assert.equal(first, second)
    assert.equal((await first)?.tokenId, t.id)

    const broken = brokenDb()
    const failing = createTokenAuthenticator(broken, { cacheMs: 60_000, now: () => 0 })
    const attempt = failing(t.token)
    assert.equal(failing(t.token), attempt)
    await assert.rejects(attempt, /ECONNREFUSED|connect/)
    const retry = failing(t.token)
    assert.notEqual(retry, attempt, 'the failure was forgotten, so the next call queries again')
    await assert.rejects(retry)
    await closeDb(broken)
  })

  test('anything not shaped like a token is refused without a query', async () => {
    const broken = brokenDb()
    const authenticate = createTokenAuthenticator(broken, { cacheMs: 0 })
    for (const value of ['', 'nonsense', 'bourse_short', `bourse_${'a'.repeat(44)}`, `Bourse_${'a'.repeat(43)}`]) {
      assert.equal(await authenticate(value), undefined, value)
    }
    await closeDb(broken)
  })
})

/** A pool on a port nothing listens on: every query fails at once. */
function brokenDb() {
  return createDb<Database>({ url: 'postgres://postgres@127.0.0.1:1/bourse', max: 1 })
}
