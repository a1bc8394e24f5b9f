/**
 * A cursor the API did not make, shaped like one but holding a key PostgreSQL refuses
 * (a time `Date.parse` reads and PostgreSQL does not, hour 99, year 0000, a bigint out of
 * range, a malformed uuid, a NUL), reached SQL as a bound: a 500. Every paged route now
 * answers 400 `invalid_cursor`, and still pages with its own cursors.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { isCursorInstant, isCursorInteger, isCursorUuid } from '../../../src/platform/db/keyset.ts'
import { openTradingApi, type TradingApi } from '../../helpers/trading.ts'

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

const cursor = (values: string[]) => Buffer.from(JSON.stringify(values)).toString('base64url')
const uuid = '00000000-0000-4000-8000-000000000000'
const badTimes = ['1', 'Tue, 01 Jan 2021', '-271821-04-20T00:00:00Z', '275760-09-13T00:00:00.000Z', '9999-99-99T99:99:99Z', '0000-01-01T00:00:00Z', '2021-02-30T00:00:00Z', '2021-01-01T::Z']
const forged: Array<[string, string[]]> = [
  ...['/api/orders', '/api/events', '/api/event-errors', '/api/sessions/s1/events'].flatMap((path) => [
    ...badTimes.map((at): [string, string[]] => [path, [at, uuid]]),
    [path, ['2021-01-01T00:00:00.000000Z', '-'.repeat(36)]] as [string, string[]],
  ]),
  ['/api/users/user1/transactions', ['9999999999999999999']],
  ['/api/users/user1/transactions', ['-1']],
  ['/api/webhooks/dead-letters', ['99999999999999999999', `msg_${'0'.repeat(32)}`]],
  ['/api/webhooks/dead-letters', ['-99999999999999999999', `msg_${'0'.repeat(32)}`]],
  ['/api/webhooks/dead-letters', ['9223372036854775807', `msg_${'0'.repeat(32)}`]],
  ['/api/webhooks/dead-letters', ['1600000000000000', '\u0000']],
]

test('a forged cursor with a key PostgreSQL refuses is a 400 invalid_cursor on every paged route', async () => {
  const failures: string[] = []
  for (const [path, values] of forged) {
    const res = await api.app.inject({ method: 'GET', url: `${path}?cursor=${cursor(values)}`, headers: api.auth(api.tokens.admin) })
    const code = res.statusCode === 400 ? (res.json() as { error: { code: string } }).error.code : undefined
    if (code !== 'invalid_cursor') failures.push(`${path} ${JSON.stringify(values)}: ${res.statusCode} ${res.body.slice(0, 120)}`)
  }
  assert.deepEqual(failures, [])
})

test('the cursor keys the queries write are accepted', () => {
  for (const at of ['2021-01-01T09:15:27.243860Z', '0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999999Z', '2024-02-29T00:00:00.5Z']) assert.ok(isCursorInstant(at), at)
  assert.ok(isCursorUuid('3F1C8C52-6a8e-4f37-9b39-2f3a1b0d9e11'))
  assert.ok(isCursorInteger('9223372036854775807') && isCursorInteger('-9223372036854775808') && !isCursorInteger('9223372036854775808'))
})

test('a page of orders still leads to the next with its own cursor', async () => {
  for (let i = 0; i < 3; i++) {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/orders',
      headers: { ...api.auth(api.tokens.user1), 'content-type': 'application/json' },
      payload: JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy' }),
    })
    assert.equal(res.statusCode, 202, res.body)
  }
  const first = await api.app.inject({ method: 'GET', url: '/api/orders?limit=2', headers: api.auth(api.tokens.user1) })
  const page = first.json() as { items: unknown[]; next_cursor: string }
  assert.equal(page.items.length, 2)
  const next = await api.app.inject({ method: 'GET', url: `/api/orders?limit=2&cursor=${page.next_cursor}`, headers: api.auth(api.tokens.user1) })
  assert.equal(next.statusCode, 200, next.body)
  assert.equal((next.json() as { items: unknown[] }).items.length, 1)
})
