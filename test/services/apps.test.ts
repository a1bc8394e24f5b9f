import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { hashApiToken } from '../../src/auth/index.ts'
import { findActiveAppByHash } from '../../src/events/apps.repository.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { runCli, testEnv } from '../helpers/infra.ts'

let testDb: TestDb
let env: NodeJS.ProcessEnv

before(async () => {
  testDb = await openTestDb()
  env = testEnv({ ...testDb.env })
})
after(() => testDb.close())

const apps = (...args: string[]) => runCli(['apps', ...args], env)

describe('bourse apps', () => {
  const created: Array<{ token: string; id: string; name: string }> = []

  test('create NAME prints the token alone on stdout, and a note on stderr', async () => {
    const res = await apps('create', 'consumer-affairs web')
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^bourse_app_[A-Za-z0-9_-]{43}\n$/)
    const token = res.stdout.trim()
    const row = await findActiveAppByHash(testDb.db, hashApiToken(token))
    assert.ok(row)
    assert.equal(row.name, 'consumer-affairs web')
    assert.ok(res.stderr.includes(row.id))
    assert.match(res.stderr, /shown only now/)
    created.push({ token, id: row.id, name: row.name })
  })

  test('create with a name taken fails naming it, and prints no token', async () => {
    const res = await apps('create', 'consumer-affairs web')
    assert.equal(res.code, 1)
    assert.equal(res.stdout, '')
    assert.match(res.stderr, /"consumer-affairs web" already exists/)
  })

  test('list shows ids, names and dates, never tokens or hashes', async () => {
    const second = await apps('create', 'mobile')
    assert.equal(second.code, 0, second.stderr)
    const row = await findActiveAppByHash(testDb.db, hashApiToken(second.stdout.trim()))
    created.push({ token: second.stdout.trim(), id: row!.id, name: 'mobile' })
    const res = await apps('list')
    assert.equal(res.code, 0, res.stderr)
    const lines = res.stdout.trimEnd().split('\n')
    assert.match(lines[0]!, /^ID\s+NAME\s+CREATED\s+REVOKED$/)
    assert.equal(lines.length, 3)
    assert.match(lines[1]!, new RegExp(`^${created[0]!.id}\\s+consumer-affairs web\\s+\\d{4}-\\d\\d-\\d\\dT\\S+\\s+-$`))
    for (const { token, id } of created) {
      assert.ok(res.stdout.includes(id))
      assert.ok(!res.stdout.includes(token.slice('bourse_app_'.length)))
      assert.ok(!res.stdout.includes(hashApiToken(token)))
    }
  })

  test('revoke by name or by id refuses the token; again is harmless; unknown fails', async () => {
    const [web, mobile] = created
    const byName = await apps('revoke', web!.name)
    assert.equal(byName.code, 0, byName.stderr)
    assert.equal(byName.stdout, `revoked "${web!.name}" (${web!.id})\n`)
    assert.equal(await findActiveAppByHash(testDb.db, hashApiToken(web!.token)), undefined)
    const byId = await apps('revoke', mobile!.id)
    assert.equal(byId.code, 0, byId.stderr)
    assert.equal(await findActiveAppByHash(testDb.db, hashApiToken(mobile!.token)), undefined)
    const again = await apps('revoke', web!.id)
    assert.equal(again.code, 0)
    assert.match(again.stdout, /already revoked/)
    const listed = await apps('list')
    assert.match(listed.stdout, new RegExp(`${web!.id}.*\\d{4}-\\d\\d-\\d\\dT\\S+\\s+\\d{4}-\\d\\d-\\d\\dT`))
    for (const unknown of ['ghost', '00000000-0000-4000-8000-000000000000']) {
      const res = await apps('revoke', unknown)
      assert.equal(res.code, 1)
      assert.match(res.stderr, /no application with id or name/)
    }
  })

  test('bad arguments are usage errors (exit 2)', async () => {
    const cases = [[], ['create'], ['create', ''], ['create', ' padded '], ['create', '3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11'], ['create', 'a', 'b'], ['list', 'x'], ['revoke'], ['rotate'], ['list', '--admin']]
    for (const args of cases) {
      const res = await apps(...args)
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`)
      assert.ok(res.stderr.length > 0)
    }
  })
})
