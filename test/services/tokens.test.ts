import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { findActiveTokenByHash, hashApiToken } from '../../src/auth/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { runCli, testEnv } from '../helpers/infra.ts'

let testDb: TestDb
let env: NodeJS.ProcessEnv

before(async () => {
  testDb = await openTestDb()
  env = testEnv({ ...testDb.env })
  await testDb.db
    .insertInto('users')
    .values([
      { id: 'user1', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
      { id: 'user2', credit: '0', webhook_secret: 'whsec_dGVzdA==' },
    ])
    .execute()
})
after(() => testDb.close())

const tokens = (...args: string[]) => runCli(['tokens', ...args], env)

describe('bourse tokens', () => {
  const created: Array<{ token: string; id: string }> = []

  test('create USER prints the token alone on stdout, and a note on stderr', async () => {
    const res = await tokens('create', 'user1', '--label', 'ci runner')
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^bourse_[A-Za-z0-9_-]{43}\n$/)
    const token = res.stdout.trim()
    assert.match(res.stderr, /user user1/)
    assert.match(res.stderr, /shown only now/)
    const row = await findActiveTokenByHash(testDb.db, hashApiToken(token))
    assert.ok(row)
    assert.deepEqual({ user: row.user_id, admin: row.admin, label: row.label }, { user: 'user1', admin: false, label: 'ci runner' })
    assert.ok(res.stderr.includes(row.id))
    created.push({ token, id: row.id })
  })

  test('create --admin makes an admin token', async () => {
    const res = await tokens('create', '--admin')
    assert.equal(res.code, 0, res.stderr)
    const row = await findActiveTokenByHash(testDb.db, hashApiToken(res.stdout.trim()))
    assert.equal(row?.admin, true)
    assert.equal(row?.user_id, null)
    created.push({ token: res.stdout.trim(), id: row!.id })
  })

  test('create for a user that does not exist fails naming the user', async () => {
    const res = await tokens('create', 'ghost')
    assert.equal(res.code, 1)
    assert.equal(res.stdout, '')
    assert.match(res.stderr, /user "ghost" does not exist/)
  })

  test('list shows ids, owners, labels and dates, never tokens or hashes', async () => {
    await tokens('create', 'user2')
    const res = await tokens('list')
    assert.equal(res.code, 0, res.stderr)
    const lines = res.stdout.trimEnd().split('\n')
    assert.match(lines[0]!, /^ID\s+OWNER\s+LABEL\s+CREATED\s+REVOKED$/)
    assert.equal(lines.length, 4)
    assert.match(res.stdout, /user user1\s+ci runner\s+\d{4}-\d\d-\d\dT/)
    assert.match(res.stdout, /admin/)
    for (const { token, id } of created) {
      assert.ok(res.stdout.includes(id))
      assert.ok(!res.stdout.includes(token.slice(7)))
      assert.ok(!res.stdout.includes(hashApiToken(token)))
    }
    const mine = await tokens('list', '--user', 'user1')
    assert.equal(mine.stdout.trimEnd().split('\n').length, 2)
    assert.match(mine.stdout, /user user1/)
  })

  test('revoke ID refuses the token; again is harmless; an unknown id fails', async () => {
    const { token, id } = created[0]!
    const res = await tokens('revoke', id)
    assert.equal(res.code, 0, res.stderr)
    assert.equal(res.stdout, `revoked ${id}\n`)
    assert.equal(await findActiveTokenByHash(testDb.db, hashApiToken(token)), undefined)
    const again = await tokens('revoke', id)
    assert.equal(again.code, 0)
    assert.match(again.stdout, /already revoked/)
    const listed = await tokens('list', '--user', 'user1')
    assert.match(listed.stdout, new RegExp(`${id}.*\\d{4}-\\d\\d-\\d\\dT\\S+\\s+\\d{4}-\\d\\d-\\d\\dT`))
    const unknown = await tokens('revoke', '00000000-0000-4000-8000-000000000000')
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /no token with id/)
  })

  test('bad arguments are usage errors (exit 2)', async () => {
    for (const args of [[], ['create'], ['create', 'user1', '--admin'], ['list', '--label', 'x'], ['revoke'], ['rotate']]) {
      const res = await tokens(...args)
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`)
      assert.ok(res.stderr.length > 0)
    }
  })
})
