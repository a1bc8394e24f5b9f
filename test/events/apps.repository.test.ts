import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createApiToken, createTokenAuthenticator } from '../../src/auth/index.ts'
import {
  APP_TOKEN_PREFIX,
  createApp,
  createAppAuthenticator,
  isAppTokenFormat,
  listApps,
  revokeApp,
} from '../../src/events/apps.repository.ts'
import { AppError } from '../../src/platform/http/errors.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

let testDb: TestDb
before(async () => {
  testDb = await openTestDb()
})
after(() => testDb.close())

describe('apps', () => {
  test('createApp returns a token shown once; only its hash is stored; names are unique', async () => {
    const app = await createApp(testDb.db, 'web')
    assert.match(app.token, /^bourse_app_[A-Za-z0-9_-]{43}$/)
    assert.ok(isAppTokenFormat(app.token))
    const row = await testDb.db.selectFrom('apps').selectAll().where('id', '=', app.id).executeTakeFirstOrThrow()
    assert.equal(row.name, 'web')
    assert.match(row.token_hash, /^[0-9a-f]{64}$/)
    assert.ok(!JSON.stringify(row).includes(app.token.slice(APP_TOKEN_PREFIX.length)))
    await assert.rejects(createApp(testDb.db, 'web'), (err: unknown) => err instanceof AppError && err.status === 409 && /"web" already exists/.test(err.message))
    for (const bad of ['', ' web', 'a'.repeat(101), 'tab\there', '3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11']) {
      await assert.rejects(createApp(testDb.db, bad), (err: unknown) => err instanceof AppError && err.status === 400, JSON.stringify(bad))
    }
    assert.deepEqual((await listApps(testDb.db)).map((a) => a.name), ['web'])
    assert.ok(!('token_hash' in (await listApps(testDb.db))[0]!))
  })

  test('revokeApp by id or name, idempotent, not_found otherwise', async () => {
    const app = await createApp(testDb.db, 'to-revoke')
    assert.equal((await revokeApp(testDb.db, app.id)).status, 'revoked')
    const again = await revokeApp(testDb.db, 'to-revoke')
    assert.equal(again.status, 'already_revoked')
    assert.ok(again.app.revoked_at instanceof Date)
    assert.equal((await revokeApp(testDb.db, 'nope')).status, 'not_found')
    assert.equal((await revokeApp(testDb.db, '00000000-0000-4000-8000-000000000000')).status, 'not_found')
  })
})

describe('createAppAuthenticator', () => {
  test('resolves an active app token to its app principal, and nothing else', async () => {
    const app = await createApp(testDb.db, 'auth-app')
    const authenticate = createAppAuthenticator(testDb.db, { cacheMs: 0 })
    assert.deepEqual(await authenticate(app.token), { tokenId: app.id, userId: null, admin: false, appId: app.id })
    const admin = await createApiToken(testDb.db, { admin: true })
    assert.equal(await authenticate(admin.token), undefined, 'a user or admin token is not an app token')
    assert.equal(await createTokenAuthenticator(testDb.db, { cacheMs: 0 })(app.token), undefined, 'nor the reverse')
    assert.equal(await authenticate(`${APP_TOKEN_PREFIX}${'A'.repeat(43)}`), undefined)
    assert.equal(await authenticate('junk'), undefined)
  })

  test('caches answers for cacheMs (a revocation applies after it), shares concurrent lookups, evicts the oldest', async () => {
    const app = await createApp(testDb.db, 'cached-app')
    let clock = 1_000
    const authenticate = createAppAuthenticator(testDb.db, { cacheMs: 5_000, maxEntries: 2, now: () => clock })
    const first = authenticate(app.token)
    assert.equal(authenticate(app.token), first, 'a concurrent lookup shares the query')
    assert.equal((await first)?.appId, app.id)
    await revokeApp(testDb.db, app.id)
    clock += 4_000
    assert.equal((await authenticate(app.token))?.appId, app.id, 'still trusted within cacheMs')
    clock += 1_001
    assert.equal(await authenticate(app.token), undefined, 'refused once the cache expired')

    const [one, two, three] = [await createApp(testDb.db, 'one'), await createApp(testDb.db, 'two'), await createApp(testDb.db, 'three')]
    assert.equal((await authenticate(one.token))?.appId, one.id)
    assert.equal((await authenticate(two.token))?.appId, two.id)
    await revokeApp(testDb.db, one.id)
    await revokeApp(testDb.db, two.id)
    assert.equal((await authenticate(two.token))?.appId, two.id, 'cached')
    assert.equal((await authenticate(three.token))?.appId, three.id)
    assert.equal(await authenticate(one.token), undefined, 'the oldest entry was evicted (maxEntries 2), so asked again')
    authenticate.clear()
    assert.equal(await authenticate(two.token), undefined, 'asked again after clear()')
  })
})
