/**
 * Made-up tokens must not push real ones out of the token cache: they are remembered
 * apart, in a bounded cache of their own, so a flood of them leaves a real token's
 * answer in memory (no query), and a repeated made-up token is refused from memory.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import {
  API_TOKEN_PREFIX,
  createApiToken,
  createCachedAuthenticator,
  findActiveTokenByHash,
  isApiTokenFormat,
  revokeApiToken,
  type TokenLookup,
} from '../../src/auth/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

let testDb: TestDb

before(async () => {
  testDb = await openTestDb()
  await testDb.db.insertInto('users').values({ id: 'user1', credit: '0', webhook_secret: 'whsec_dGVzdA==' }).execute()
})
after(async () => {
  await testDb.close()
})

/** A well-formed token nobody was given. */
const madeUpToken = () => API_TOKEN_PREFIX + randomBytes(32).toString('base64url')

/** The PostgreSQL lookup of `createTokenAuthenticator`, counting its queries. */
function countingLookup(): TokenLookup & { queries: number } {
  const source = {
    queries: 0,
    accepts: isApiTokenFormat,
    async lookup(tokenHash: string) {
      source.queries++
      const row = await findActiveTokenByHash(testDb.db, tokenHash)
      return row && { tokenId: row.id, userId: row.user_id, admin: row.admin }
    },
  }
  return source
}

describe('the token cache under made-up tokens', () => {
  test('a flood of made-up tokens leaves a real token cached', async () => {
    const real = await createApiToken(testDb.db, { userId: 'user1' })
    const source = countingLookup()
    let clock = 1_000
    const authenticate = createCachedAuthenticator(source, {
      cacheMs: 60_000,
      maxEntries: 50,
      maxRejectedEntries: 50,
      now: () => clock,
    })
    assert.equal((await authenticate(real.token))?.tokenId, real.id)
    assert.equal(source.queries, 1)

    // Four times as many made-up tokens as either cache holds, each asked once.
    for (let i = 0; i < 200; i++) assert.equal(await authenticate(madeUpToken()), undefined)
    assert.equal(source.queries, 201, 'each new made-up token is one query')

    clock += 30_000
    assert.equal((await authenticate(real.token))?.tokenId, real.id)
    assert.equal(source.queries, 201, 'the real token is still answered from memory')
  })

  test('a rejected token is not asked again within the rejected-token time', async () => {
    const source = countingLookup()
    let clock = 1_000
    const authenticate = createCachedAuthenticator(source, { cacheMs: 60_000, rejectedCacheMs: 10_000, now: () => clock })
    const token = madeUpToken()
    assert.equal(await authenticate(token), undefined)
    assert.equal(source.queries, 1)
    for (let i = 0; i < 100; i++) assert.equal(await authenticate(token), undefined)
    clock += 9_999
    assert.equal(await authenticate(token), undefined)
    assert.equal(source.queries, 1, 'refused from memory within rejectedCacheMs')
    clock += 2
    assert.equal(await authenticate(token), undefined)
    assert.equal(source.queries, 2, 'asked again once it expired')

    // A revoked token is remembered as rejected too, once its accepted answer expired.
    const revoked = await createApiToken(testDb.db, { userId: 'user1' })
    assert.equal((await authenticate(revoked.token))?.tokenId, revoked.id)
    await revokeApiToken(testDb.db, revoked.id)
    clock += 60_001
    assert.equal(await authenticate(revoked.token), undefined)
    const asked = source.queries
    assert.equal(await authenticate(revoked.token), undefined)
    assert.equal(source.queries, asked, 'the revocation is remembered')
  })

  test('fresh: true asks the store even when an answer is remembered (a stream re-checking its token)', async () => {
    const source = countingLookup()
    const authenticate = createCachedAuthenticator(source, { cacheMs: 60_000 })
    const token = await createApiToken(testDb.db, { userId: 'user1' })
    assert.equal((await authenticate(token.token))?.tokenId, token.id)
    await revokeApiToken(testDb.db, token.id)
    assert.equal((await authenticate(token.token))?.tokenId, token.id, 'remembered')
    assert.equal(await authenticate(token.token, { fresh: true }), undefined)
    assert.equal(await authenticate(token.token), undefined, 'the fresh answer replaced the remembered one')
    assert.equal(source.queries, 2)
  })
})
