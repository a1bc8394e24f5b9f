import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import {
  createApiToken,
  findActiveTokenByHash,
  hashApiToken,
  isApiTokenFormat,
  listApiTokens,
  revokeApiToken,
} from '../../src/auth/index.ts'
import { NotFound } from '../../src/platform/http/errors.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

let testDb: TestDb

before(async () => {
  testDb = await openTestDb()
  await testDb.db
    .insertInto('users')
    .values([
      { id: 'alice', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
      { id: 'bob', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
    ])
    .execute()
})
after(() => testDb.close())

describe('api tokens', () => {
  test('a token is bourse_ + 43 base64url characters, stored only as its SHA-256', async () => {
    const { id, token } = await createApiToken(testDb.db, { userId: 'alice' }, 'laptop')
    assert.match(token, /^bourse_[A-Za-z0-9_-]{43}$/)
    assert.equal(Buffer.from(token.slice(7), 'base64url').length, 32)
    assert.ok(isApiTokenFormat(token))
    const row = await testDb.db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
    assert.equal(row.token_hash, createHash('sha256').update(token).digest('hex'))
    assert.equal(row.token_hash, hashApiToken(token))
    assert.ok(!Object.values(row).some((value) => String(value).includes(token.slice(7))), 'the secret is not stored')
    assert.deepEqual(
      { user_id: row.user_id, admin: row.admin, label: row.label, revoked_at: row.revoked_at },
      { user_id: 'alice', admin: false, label: 'laptop', revoked_at: null },
    )
  })

  test('tokens differ each time', async () => {
    const tokens = new Set<string>()
    for (let i = 0; i < 20; i++) tokens.add((await createApiToken(testDb.db, { userId: 'bob' })).token)
    assert.equal(tokens.size, 20)
  })

  test('an admin token acts for no particular user', async () => {
    const { id, token } = await createApiToken(testDb.db, { admin: true })
    const found = await findActiveTokenByHash(testDb.db, hashApiToken(token))
    assert.equal(found?.id, id)
    assert.equal(found?.admin, true)
    assert.equal(found?.user_id, null)
    assert.equal(found?.label, null)
  })

  test('a token for a user that does not exist is NotFound naming the user', async () => {
    await assert.rejects(createApiToken(testDb.db, { userId: 'ghost' }), (err: unknown) => {
      assert.ok(err instanceof NotFound)
      assert.match(err.message, /"ghost"/)
      assert.deepEqual(err.details, { user: 'ghost' })
      return true
    })
  })

  test('findActiveTokenByHash finds active tokens only, and never returns the hash', async () => {
    const { id, token } = await createApiToken(testDb.db, { userId: 'alice' })
    const found = await findActiveTokenByHash(testDb.db, hashApiToken(token))
    assert.equal(found?.id, id)
    assert.equal(found && 'token_hash' in found, false)
    assert.equal(await findActiveTokenByHash(testDb.db, hashApiToken(`${token}x`)), undefined)
    assert.equal(await revokeApiToken(testDb.db, id), 'revoked')
    assert.equal(await findActiveTokenByHash(testDb.db, hashApiToken(token)), undefined)
  })

  test('revoking twice keeps the first time; unknown ids and non-UUIDs are not_found', async () => {
    const { id } = await createApiToken(testDb.db, { userId: 'bob' })
    assert.equal(await revokeApiToken(testDb.db, id), 'revoked')
    const first = await testDb.db.selectFrom('api_tokens').select('revoked_at').where('id', '=', id).executeTakeFirstOrThrow()
    assert.ok(first.revoked_at instanceof Date)
    assert.equal(await revokeApiToken(testDb.db, id), 'already_revoked')
    const second = await testDb.db.selectFrom('api_tokens').select('revoked_at').where('id', '=', id).executeTakeFirstOrThrow()
    assert.deepEqual(second.revoked_at, first.revoked_at)
    assert.equal(await revokeApiToken(testDb.db, '00000000-0000-4000-8000-000000000000'), 'not_found')
    assert.equal(await revokeApiToken(testDb.db, 'not-a-uuid'), 'not_found')
  })

  test('listApiTokens lists every token oldest first, or one user’s, without hashes', async () => {
    const all = await listApiTokens(testDb.db)
    const stored = await testDb.db.selectFrom('api_tokens').select('id').execute()
    assert.equal(all.length, stored.length)
    assert.ok(all.every((t) => !('token_hash' in t)))
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.created_at <= all[i]!.created_at)
    const alices = await listApiTokens(testDb.db, { userId: 'alice' })
    assert.ok(alices.length >= 2)
    assert.ok(alices.every((t) => t.user_id === 'alice'))
    assert.ok(all.some((t) => t.admin && t.user_id === null))
    assert.ok(all.some((t) => t.revoked_at !== null))
  })
})
