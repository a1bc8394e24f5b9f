/**
 * A token the API does not remember is charged to its address before it is looked up:
 * one address sending made-up tokens causes at most its rate-limit budget of PostgreSQL
 * queries, none once it answers 429, and real tokens keep working from the cache.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { Redis } from 'ioredis'
import { API_TOKEN_PREFIX, createApiToken, createCachedAuthenticator, findActiveTokenByHash, isApiTokenFormat } from '../../../src/auth/index.ts'
import { createHttpApp, type HttpApp, RATE_LIMIT_PREFIX } from '../../../src/platform/http/app.ts'
import { firstPrincipal, principalOf, requireAuth } from '../../../src/platform/http/auth.ts'
import { createAppAuthenticator } from '../../../src/events/index.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { closeTestRedis, openTestRedis, testConfig } from '../../helpers/infra.ts'

const BUDGET = 20
let redis: Redis
let testDb: TestDb
let app: HttpApp
/** PostgreSQL token queries made by the app. */
let queries = 0

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
  await testDb.db.insertInto('users').values({ id: 'user1', credit: '0', webhook_secret: 'whsec_dGVzdA==' }).execute()
  // Composed as the API composes its authenticators: users' tokens, then applications'.
  const users = createCachedAuthenticator(
    {
      accepts: isApiTokenFormat,
      async lookup(tokenHash) {
        queries++
        const row = await findActiveTokenByHash(testDb.db, tokenHash)
        return row && { tokenId: row.id, userId: row.user_id, admin: row.admin }
      },
    },
    { cacheMs: 60_000 },
  )
  const authenticate = firstPrincipal(users, createAppAuthenticator(testDb.db, { cacheMs: 60_000 }))
  app = await createHttpApp(
    { config: testConfig({ RATE_LIMIT_MAX: String(BUDGET) }), log: createLogger({ level: 'silent', pretty: false }), redis },
    {
      title: 'unknown tokens',
      version: '0',
      authenticate,
      routes: [
        async (routes) => {
          routes.get('/me', { onRequest: requireAuth }, async (request) => principalOf(request))
        },
      ],
    },
  )
})
after(async () => {
  await app.close()
  await testDb.close()
  await closeTestRedis(redis)
})

const madeUpToken = () => API_TOKEN_PREFIX + randomBytes(32).toString('base64url')
const me = (remoteAddress: string, token: string) =>
  app.inject({ method: 'GET', url: '/me', remoteAddress, headers: { authorization: `Bearer ${token}` } })

describe('made-up tokens from one address', () => {
  test('cost at most the address budget of lookups; a cached real token still works', async () => {
    const real = await createApiToken(testDb.db, { userId: 'user1' })
    assert.equal((await me('10.9.0.1', real.token)).statusCode, 200)
    const before = queries

    const flooder = '10.9.0.2'
    // Concurrent first, as a client would flood, then one after the other.
    const burst = await Promise.all(Array.from({ length: 100 }, () => me(flooder, madeUpToken())))
    const sequential = []
    for (let i = 0; i < 100; i++) sequential.push((await me(flooder, madeUpToken())).statusCode)
    const statuses = [...burst.map((res) => res.statusCode), ...sequential]
    assert.equal(statuses.filter((s) => s === 401).length, BUDGET, 'the budget of made-up tokens is refused as unknown')
    assert.equal(statuses.filter((s) => s === 429).length, 200 - BUDGET, 'the rest is rate limited')
    assert.equal(queries - before, BUDGET, 'no lookup once the address is over its budget')

    // The real token is remembered: it needs no lookup, even from the flooding address.
    const fromFlooder = await me(flooder, real.token)
    assert.equal(fromFlooder.statusCode, 200)
    assert.equal((fromFlooder.json() as { tokenId: string }).tokenId, real.id)
    assert.equal(queries - before, BUDGET)
  })

  test('a real token looked up gives its address hit back and counts against its own budget', async () => {
    const real = await createApiToken(testDb.db, { userId: 'user1' })
    const address = '10.9.0.3'
    const res = await me(address, real.token)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-ratelimit-remaining'], String(BUDGET - 1))
    assert.equal(Number((await redis.get(`${RATE_LIMIT_PREFIX}ip:${address}`)) ?? 0), 0, 'the address is not charged')
    assert.equal(await redis.get(`${RATE_LIMIT_PREFIX}token:${real.id}`), '1')
  })
})
