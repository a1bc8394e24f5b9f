/**
 * The alerts API over HTTP (`app.inject`) on the real PostgreSQL and Redis: creation with
 * every refusal (each naming its field), duplicates (case and spaces), ownership (user,
 * other user, admin, application), change, delete, pause and resume on the tick grid,
 * keyset paging through 120 alerts, and what runs found (runs and items written here as
 * the worker would).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createApiToken } from '../../src/auth/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import { createAccounts } from '../../src/trading/index.ts'
import { insertDoneRunSeries, insertItems, insertRuns, openAlertsApi } from '../helpers/alerts-api.ts'
import type { TradingApi } from '../helpers/trading.ts'

const TICK_MS = 120_000

let api: TradingApi
let appToken: string
let user3: string
before(async () => {
  api = await openAlertsApi()
  appToken = (await createApp(api.testDb.db, 'alerts-test-app')).token
  await createAccounts(api.testDb.db, [{ id: 'user3', credit: 0 }])
  user3 = (await createApiToken(api.testDb.db, { userId: 'user3' })).token
})
after(async () => {
  await api.close()
})

type Json = Record<string, unknown>
interface Alert {
  id: string
  user_id: string
  email: string
  phrase: string
  frequency_minutes: number
  max_price: string | null
  currency: string | null
  status: string
  paused_by: string | null
  next_run_at: string
  last_run_at: string | null
  created_at: string
  updated_at: string
}
interface ErrorBody {
  error: { code: string; message: string; details?: unknown }
}

const as = (token: string | undefined) => (token === undefined ? {} : api.auth(token))
const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, token?: string, payload?: unknown) =>
  api.app.inject({ method, url, headers: as(token), ...(payload !== undefined && { payload: payload as Json }) })
/** Sends `text` as the JSON body as it is (numbers JSON.stringify would rewrite). */
const postRaw = (url: string, token: string, text: string) =>
  api.app.inject({ method: 'POST', url, headers: { ...as(token), 'content-type': 'application/json' }, payload: text })
const errorOf = (res: { json: () => unknown }) => (res.json() as ErrorBody).error
const fieldsOf = (res: { json: () => unknown }) => ((errorOf(res).details ?? []) as Array<{ field: string; message: string }>).map((d) => d.field)

/** A local part of 64 octets and a domain of 189: together the longest address, 254 octets. */
const MAX_LOCAL = 'l'.repeat(64)
const DOMAIN_189 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(57)}.com`

let serial = 0
/** A valid body, a new phrase each time (no duplicate unless asked). */
const body = (extra: Json = {}): Json => ({ email: 'ada@example.com', phrase: `keyboard ${++serial}`, frequency_minutes: 10, ...extra })

async function create(token: string, extra: Json = {}): Promise<Alert> {
  const res = await call('POST', '/api/alerts', token, body(extra))
  assert.equal(res.statusCode, 201, res.body)
  return res.json() as Alert
}

/** Asserts `at` is a tick of the grid within (before, after + tick]. */
function assertNextTick(at: string, before: number, after: number): void {
  const ms = Date.parse(at)
  assert.equal(ms % TICK_MS, 0, `${at} is on the ${TICK_MS} ms grid`)
  assert.ok(ms > before && ms <= after + TICK_MS, `${at} is the tick after now`)
}

describe('POST /api/alerts', () => {
  it("creates an alert for the token's user: 201, Location, stored forms, first run at the next tick", async () => {
    const t0 = Date.now()
    const res = await call('POST', '/api/alerts', api.tokens.user1, {
      email: 'Ada.Lovelace+kb@Example.COM',
      phrase: '  Mechanical \t keyboard\n  TKL ',
      frequency_minutes: 30,
      max_price: 120.5,
      currency: 'EUR',
    })
    const t1 = Date.now()
    assert.equal(res.statusCode, 201, res.body)
    const alert = res.json() as Alert
    assert.equal(res.headers.location, `/api/alerts/${alert.id}`)
    assert.match(alert.id, /^[1-9]\d*$/)
    assert.equal(alert.user_id, 'user1')
    assert.equal(alert.email, 'Ada.Lovelace+kb@example.com', 'the domain is lower-cased, the local part kept')
    assert.equal(alert.phrase, 'Mechanical keyboard TKL')
    assert.equal(alert.frequency_minutes, 30)
    assert.equal(alert.max_price, '120.50')
    assert.equal(alert.currency, 'EUR')
    assert.equal(alert.status, 'active')
    assert.equal(alert.paused_by, null)
    assert.equal(alert.last_run_at, null)
    assertNextTick(alert.next_run_at, t0, t1)
    const row = await api.testDb.db.selectFrom('alerts').select(['phrase_key']).where('id', '=', alert.id).executeTakeFirstOrThrow()
    assert.equal(row.phrase_key, 'mechanical keyboard tkl')
    assert.deepEqual((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).json(), alert)
  })

  it('takes max_price exactly, as a JSON number or a string, and leaves it and the currency out when absent or null', async () => {
    const cases: Array<[string, string]> = [
      ['0.1', '0.10'],
      ['"19.99"', '19.99'],
      ['7', '7.00'],
      ['"007.5"', '7.50'],
      ['1.50', '1.50'],
      ['1.500', '1.50'],
      ['999999999999.99', '999999999999.99'],
    ]
    for (const [text, stored] of cases) {
      const res = await postRaw('/api/alerts', api.tokens.user1, `{"email":"a@example.com","phrase":"p ${++serial}","frequency_minutes":2,"max_price":${text}}`)
      assert.equal(res.statusCode, 201, `${text}: ${res.body}`)
      assert.equal((res.json() as Alert).max_price, stored, text)
    }
    const none = await create(api.tokens.user1, { max_price: null, currency: null })
    assert.equal(none.max_price, null)
    assert.equal(none.currency, null)
    assert.equal((await create(api.tokens.user1)).max_price, null)
  })

  it('refuses a price a float would have rounded into an acceptable one', async () => {
    // As doubles both are exactly 20 and 1: only their written digits show they are not.
    for (const text of ['19.999999999999999', '1.0000000000000001']) {
      const res = await postRaw('/api/alerts', api.tokens.user1, `{"email":"a@example.com","phrase":"float","frequency_minutes":2,"max_price":${text}}`)
      assert.equal(res.statusCode, 400, text)
      assert.deepEqual(errorOf(res).details, [{ field: 'body.max_price', message: 'must have at most 2 decimals' }])
    }
  })

  it('accepts the email syntaxes people have', async () => {
    const cases: Array<[string, string]> = [
      ['first.last+tag@sub.example.co.uk', 'first.last+tag@sub.example.co.uk'],
      ["o'neil_x-y{1}@example.org", "o'neil_x-y{1}@example.org"],
      ['a@[192.0.2.1]', 'a@[192.0.2.1]'],
      ['a@[IPv6:2001:DB8::1]', 'a@[IPv6:2001:db8::1]'],
      ['jörg@Bücher.DE', 'jörg@bücher.de'],
      ['x@XN--BCHER-KVA.de', 'x@bücher.de'],
      [`${'l'.repeat(64)}@example.com`, `${'l'.repeat(64)}@example.com`],
      [`${MAX_LOCAL}@${DOMAIN_189}`, `${MAX_LOCAL}@${DOMAIN_189}`],
    ]
    for (const [email, stored] of cases) {
      const res = await call('POST', '/api/alerts', api.tokens.user1, body({ email }))
      assert.equal(res.statusCode, 201, `${email}: ${res.body}`)
      assert.equal((res.json() as Alert).email, stored)
    }
  })

  it('answers 400 naming the field for each bad value', async () => {
    const longDomain = `a@${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(63)}.${'g'.repeat(63)}.com`
    const cases: Array<[Json, string]> = [
      [{ email: 'plain' }, 'body.email'],
      [{ email: 'a@example' }, 'body.email'],
      [{ email: 'a b@example.com' }, 'body.email'],
      [{ email: ' a@example.com' }, 'body.email'],
      [{ email: 'a@@example.com' }, 'body.email'],
      [{ email: 'a@b@example.com' }, 'body.email'],
      [{ email: '@example.com' }, 'body.email'],
      [{ email: 'a@' }, 'body.email'],
      [{ email: '.a@example.com' }, 'body.email'],
      [{ email: 'a.@example.com' }, 'body.email'],
      [{ email: 'a..b@example.com' }, 'body.email'],
      [{ email: '"a b"@example.com' }, 'body.email'],
      [{ email: 'a@-example.com' }, 'body.email'],
      [{ email: 'a@example..com' }, 'body.email'],
      [{ email: 'a@example.com.' }, 'body.email'],
      [{ email: 'a@exa_mple.com' }, 'body.email'],
      [{ email: 'a@1.2.3.4' }, 'body.email'],
      [{ email: 'a@[300.1.1.1]' }, 'body.email'],
      [{ email: 'a@[example.com]' }, 'body.email'],
      [{ email: `${'l'.repeat(65)}@example.com` }, 'body.email'],
      [{ email: longDomain }, 'body.email'],
      [{ email: `${MAX_LOCAL}@${DOMAIN_189}x` }, 'body.email'],
      [{ email: 'a@example.com\n' }, 'body.email'],
      [{ email: 5 }, 'body.email'],
      [{ email: undefined }, 'body.email'],
      [{ phrase: '' }, 'body.phrase'],
      [{ phrase: '  \t\n\u00a0 ' }, 'body.phrase'],
      [{ phrase: 'x'.repeat(201) }, 'body.phrase'],
      [{ phrase: `${'x'.repeat(100)}   ${'y'.repeat(100)}` }, 'body.phrase'],
      [{ phrase: 'bell\u0007' }, 'body.phrase'],
      [{ phrase: 42 }, 'body.phrase'],
      [{ frequency_minutes: 5 }, 'body.frequency_minutes'],
      [{ frequency_minutes: 0 }, 'body.frequency_minutes'],
      [{ frequency_minutes: '10' }, 'body.frequency_minutes'],
      [{ frequency_minutes: 10.5 }, 'body.frequency_minutes'],
      [{ frequency_minutes: undefined }, 'body.frequency_minutes'],
      [{ max_price: 1.234 }, 'body.max_price'],
      [{ max_price: -1 }, 'body.max_price'],
      [{ max_price: 0 }, 'body.max_price'],
      [{ max_price: '0.00' }, 'body.max_price'],
      [{ max_price: 'abc' }, 'body.max_price'],
      [{ max_price: '' }, 'body.max_price'],
      [{ max_price: ' 5' }, 'body.max_price'],
      [{ max_price: '+5' }, 'body.max_price'],
      [{ max_price: '1e3' }, 'body.max_price'],
      [{ max_price: '.5' }, 'body.max_price'],
      [{ max_price: 1_000_000_000_000 }, 'body.max_price'],
      [{ max_price: true }, 'body.max_price'],
      [{ max_price: [1] }, 'body.max_price'],
      [{ currency: 'usd' }, 'body.currency'],
      [{ currency: 'EURO' }, 'body.currency'],
      [{ currency: 'E1R' }, 'body.currency'],
      [{ currency: 978 }, 'body.currency'],
      [{ extra: 1 }, 'body.extra'],
      [{ user_id: 'no spaces allowed' }, 'body.user_id'],
    ]
    for (const [change, field] of cases) {
      const res = await call('POST', '/api/alerts', api.tokens.user1, body(change))
      assert.equal(res.statusCode, 400, `${JSON.stringify(change)}: ${res.body}`)
      assert.equal(errorOf(res).code, 'validation_failed')
      assert.deepEqual(fieldsOf(res), [field], JSON.stringify(change))
      assert.ok(errorOf(res).message.includes(field))
    }
  })

  it('explains the refusals of a price', async () => {
    const messages: Array<[string, RegExp]> = [
      ['1e3', /without an exponent/],
      ['-1', /greater than 0/],
      ['0', /greater than 0/],
      ['1.234', /at most 2 decimals/],
      ['"abc"', /decimal number greater than 0 with at most 2 decimals/],
      ['1000000000000', /less than 1000000000000/],
    ]
    for (const [text, message] of messages) {
      const res = await postRaw('/api/alerts', api.tokens.user1, `{"email":"a@example.com","phrase":"p","frequency_minutes":2,"max_price":${text}}`)
      assert.equal(res.statusCode, 400, text)
      assert.match((errorOf(res).details as Array<{ message: string }>)[0]!.message, message, text)
    }
  })

  it('names every bad field in one answer, the schema\'s and the route\'s together', async () => {
    const res = await call('POST', '/api/alerts', api.tokens.user1, {
      email: 'nope',
      phrase: ' ',
      frequency_minutes: 5,
      max_price: 1.234,
      currency: 'usd',
      colour: 'red',
    })
    assert.equal(res.statusCode, 400)
    assert.deepEqual(fieldsOf(res).sort(), ['body.colour', 'body.currency', 'body.email', 'body.frequency_minutes', 'body.max_price', 'body.phrase'])
  })

  it('refuses a body that is not an object, and a body that is not JSON', async () => {
    for (const text of ['[]', '"x"', 'null', '{"email":']) {
      const res = await postRaw('/api/alerts', api.tokens.user1, text)
      assert.equal(res.statusCode, 400, text)
    }
    const form = await api.app.inject({
      method: 'POST',
      url: '/api/alerts',
      headers: { ...as(api.tokens.user1), 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'email=a%40example.com&phrase=x&frequency_minutes=2',
    })
    assert.equal(form.statusCode, 415)
  })

  it('answers 401 without a token or with an unknown one, 403 for an application token', async () => {
    const none = await call('POST', '/api/alerts', undefined, body())
    assert.equal(none.statusCode, 401)
    assert.equal(errorOf(none).code, 'unauthorized')
    const unknown = await call('POST', '/api/alerts', `bourse_${'x'.repeat(43)}`, body())
    assert.equal(unknown.statusCode, 401)
    const app = await call('POST', '/api/alerts', appToken, body())
    assert.equal(app.statusCode, 403)
    assert.equal((await call('GET', '/api/alerts', appToken)).statusCode, 403)
  })

  it('an admin names the user (400 naming user_id without it, 404 for a user that does not exist)', async () => {
    const without = await call('POST', '/api/alerts', api.tokens.admin, body())
    assert.equal(without.statusCode, 400)
    assert.deepEqual(errorOf(without).details, [{ field: 'body.user_id', message: 'is required with an admin token' }])
    const created = await call('POST', '/api/alerts', api.tokens.admin, body({ user_id: 'user2' }))
    assert.equal(created.statusCode, 201, created.body)
    assert.equal((created.json() as Alert).user_id, 'user2')
    const ghost = await call('POST', '/api/alerts', api.tokens.admin, body({ user_id: 'ghost' }))
    assert.equal(ghost.statusCode, 404)
    assert.deepEqual(errorOf(ghost).details, { field: 'body.user_id' })
  })

  it('a user token may name its own user, not another (403)', async () => {
    assert.equal((await call('POST', '/api/alerts', api.tokens.user1, body({ user_id: 'user1' }))).statusCode, 201)
    const other = await call('POST', '/api/alerts', api.tokens.user1, body({ user_id: 'user2' }))
    assert.equal(other.statusCode, 403)
    assert.deepEqual(errorOf(other).details, { field: 'body.user_id' })
  })

  it('answers 409 alert_exists naming the alert for the same search again, whatever the case and spaces', async () => {
    const first = await create(api.tokens.user1, { email: 'Grace@Example.com', phrase: ' Gaming   Mouse ', frequency_minutes: 2 })
    const again = await call('POST', '/api/alerts', api.tokens.user1, { email: 'Grace@EXAMPLE.COM', phrase: 'gaming mouse', frequency_minutes: 2, max_price: 5 })
    assert.equal(again.statusCode, 409, again.body)
    assert.equal(errorOf(again).code, 'alert_exists')
    assert.deepEqual(errorOf(again).details, { alert_id: first.id })
    assert.match(errorOf(again).message, new RegExp(`\\b${first.id}\\b`))
    // Another frequency, another address (the local part is the mailbox's own), another user: other searches.
    assert.equal((await call('POST', '/api/alerts', api.tokens.user1, { email: 'Grace@example.com', phrase: 'gaming mouse', frequency_minutes: 10 })).statusCode, 201)
    assert.equal((await call('POST', '/api/alerts', api.tokens.user1, { email: 'grace@example.com', phrase: 'gaming mouse', frequency_minutes: 2 })).statusCode, 201)
    assert.equal((await call('POST', '/api/alerts', api.tokens.user2, { email: 'Grace@example.com', phrase: 'gaming mouse', frequency_minutes: 2 })).statusCode, 201)
  })

  it('creates one alert out of concurrent identical requests; the others name it', async () => {
    const same = { email: 'race@example.com', phrase: 'Race Condition', frequency_minutes: 30 }
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => call('POST', '/api/alerts', api.tokens.user2, { ...same, phrase: i % 2 ? 'race  condition' : 'RACE condition' })))
    const created = answers.filter((res) => res.statusCode === 201)
    assert.equal(created.length, 1, answers.map((res) => res.statusCode).join(' '))
    const id = (created[0]!.json() as Alert).id
    for (const res of answers.filter((r) => r.statusCode !== 201)) {
      assert.equal(res.statusCode, 409, res.body)
      assert.deepEqual(errorOf(res).details, { alert_id: id })
    }
  })
})

describe('GET /api/alerts/:id, PATCH and DELETE', () => {
  it("shows a user its own alert, another user's as 404 (as if there were none), an admin any", async () => {
    const alert = await create(api.tokens.user1)
    assert.equal((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).statusCode, 200)
    const other = await call('GET', `/api/alerts/${alert.id}`, api.tokens.user2)
    const missing = await call('GET', '/api/alerts/987654321', api.tokens.user2)
    assert.equal(other.statusCode, 404)
    assert.equal(missing.statusCode, 404)
    assert.equal(errorOf(other).code, errorOf(missing).code)
    assert.deepEqual(errorOf(other).details, { field: 'params.id' })
    assert.deepEqual((await call('GET', `/api/alerts/${alert.id}`, api.tokens.admin)).json(), alert)
    assert.equal((await call('GET', `/api/alerts/${alert.id}`)).statusCode, 401)
  })

  it('answers 400 naming params.id for an id that is not a bigint', async () => {
    for (const id of ['abc', '-1', '1.5', '1e3', '99999999999999999999', '9223372036854775808', '%20']) {
      for (const [method, url] of [
        ['GET', `/api/alerts/${id}`],
        ['PATCH', `/api/alerts/${id}`],
        ['DELETE', `/api/alerts/${id}`],
        ['POST', `/api/alerts/${id}/pause`],
        ['GET', `/api/alerts/${id}/runs`],
      ] as const) {
        const res = await call(method, url, api.tokens.admin, method === 'PATCH' ? { frequency_minutes: 2 } : undefined)
        assert.equal(res.statusCode, 400, `${method} ${url}: ${res.body}`)
        assert.deepEqual(fieldsOf(res), ['params.id'], `${method} ${url}`)
      }
    }
    assert.equal((await call('GET', '/api/alerts/9223372036854775807', api.tokens.admin)).statusCode, 404)
    assert.equal((await call('GET', '/api/alerts/0', api.tokens.admin)).statusCode, 404)
  })

  it('changes only the fields sent; null removes max_price and currency', async () => {
    const alert = await create(api.tokens.user1, { max_price: '99.90', currency: 'USD' })
    const res = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, { max_price: null, email: 'New@Example.ORG' })
    assert.equal(res.statusCode, 200, res.body)
    const changed = res.json() as Alert
    assert.equal(changed.max_price, null)
    assert.equal(changed.currency, 'USD')
    assert.equal(changed.email, 'New@example.org')
    assert.equal(changed.phrase, alert.phrase)
    assert.ok(Date.parse(changed.updated_at) >= Date.parse(alert.updated_at))
    const again = (await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, { currency: null, max_price: 5 })).json() as Alert
    assert.equal(again.currency, null)
    assert.equal(again.max_price, '5.00')
  })

  it('moves the next run to the next tick when the phrase (other than its case) or the frequency changes', async () => {
    const alert = await create(api.tokens.user1, { phrase: 'Tube Amp', frequency_minutes: 10 })
    const far = '2030-01-01T00:00:00.000Z'
    const setFar = () => api.testDb.db.updateTable('alerts').set({ next_run_at: far }).where('id', '=', alert.id).execute()
    const patch = async (change: Json) => {
      const res = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, change)
      assert.equal(res.statusCode, 200, res.body)
      return res.json() as Alert
    }
    await setFar()
    assert.equal((await patch({ max_price: 50, email: 'amp@example.com' })).next_run_at, far, 'price and email keep the schedule')
    assert.equal((await patch({ phrase: 'tube  AMP' })).next_run_at, far, 'a change of case only is the same search')
    assert.equal((await patch({ frequency_minutes: 10 })).next_run_at, far, 'the same frequency is no change')
    let t0 = Date.now()
    let changed = await patch({ phrase: 'valve amp' })
    assertNextTick(changed.next_run_at, t0, Date.now())
    assert.equal(changed.phrase, 'valve amp')
    await setFar()
    t0 = Date.now()
    changed = await patch({ frequency_minutes: 2 })
    assertNextTick(changed.next_run_at, t0, Date.now())
  })

  it('answers 400 for an empty or bad change, naming the fields; 409 naming the alert a change would duplicate', async () => {
    const alert = await create(api.tokens.user1, { phrase: 'Synth', frequency_minutes: 2 })
    const empty = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, {})
    assert.equal(empty.statusCode, 400)
    const bad = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, {
      email: 'x@y',
      phrase: '',
      frequency_minutes: 3,
      max_price: '1.001',
      currency: 'eur',
      user_id: 'user2',
      status: 'paused',
    })
    assert.equal(bad.statusCode, 400)
    assert.deepEqual(fieldsOf(bad).sort(), ['body.currency', 'body.email', 'body.frequency_minutes', 'body.max_price', 'body.phrase', 'body.status', 'body.user_id'])
    for (const nulled of ['email', 'phrase', 'frequency_minutes']) {
      const res = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, { [nulled]: null })
      assert.deepEqual(fieldsOf(res), [`body.${nulled}`])
    }
    const other = await create(api.tokens.user1, { phrase: 'Drum machine', frequency_minutes: 2 })
    const dup = await call('PATCH', `/api/alerts/${other.id}`, api.tokens.user1, { phrase: 'SYNTH' })
    assert.equal(dup.statusCode, 409)
    assert.equal(errorOf(dup).code, 'alert_exists')
    assert.deepEqual(errorOf(dup).details, { alert_id: alert.id })
    assert.equal(((await call('GET', `/api/alerts/${other.id}`, api.tokens.user1)).json() as Alert).phrase, 'Drum machine', 'unchanged')
    // Changing an alert to what it already is duplicates nothing.
    assert.equal((await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user1, { phrase: 'synth' })).statusCode, 200)
  })

  it("does not change another user's alert (404); an admin may", async () => {
    const alert = await create(api.tokens.user1)
    const res = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.user2, { frequency_minutes: 30 })
    assert.equal(res.statusCode, 404)
    assert.equal(((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).json() as Alert).frequency_minutes, 10)
    const admin = await call('PATCH', `/api/alerts/${alert.id}`, api.tokens.admin, { frequency_minutes: 30 })
    assert.equal(admin.statusCode, 200)
    assert.equal((admin.json() as Alert).frequency_minutes, 30)
  })

  it("deletes an alert with its runs and items: 204, then 404; another user's is 404 and stays", async () => {
    const alert = await create(api.tokens.user1)
    const [runId] = await insertRuns(api.testDb.db, alert.id, [{ dueAt: '2026-01-01T10:00:00Z', cheapestTotal: '5', cheapestCurrency: 'EUR' }])
    await insertItems(api.testDb.db, runId!, 3)
    assert.equal((await call('DELETE', `/api/alerts/${alert.id}`, api.tokens.user2)).statusCode, 404)
    assert.equal((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).statusCode, 200)
    const res = await call('DELETE', `/api/alerts/${alert.id}`, api.tokens.user1)
    assert.equal(res.statusCode, 204)
    assert.equal(res.body, '')
    assert.equal((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).statusCode, 404)
    assert.equal((await call('DELETE', `/api/alerts/${alert.id}`, api.tokens.user1)).statusCode, 404)
    const left = await api.testDb.db.selectFrom('alert_items').select((eb) => eb.fn.countAll<string>().as('n')).where('run_id', '=', runId!).executeTakeFirstOrThrow()
    assert.equal(Number(left.n), 0)
    const admin = await create(api.tokens.user2)
    assert.equal((await call('DELETE', `/api/alerts/${admin.id}`, api.tokens.admin)).statusCode, 204)
  })
})

describe('pause and resume', () => {
  it('pauses (idempotently) and resumes at the next tick', async () => {
    const alert = await create(api.tokens.user1)
    const paused = await call('POST', `/api/alerts/${alert.id}/pause`, api.tokens.user1)
    assert.equal(paused.statusCode, 200, paused.body)
    const p1 = paused.json() as Alert
    assert.equal(p1.status, 'paused')
    assert.equal(p1.paused_by, 'user')
    const p2 = (await call('POST', `/api/alerts/${alert.id}/pause`, api.tokens.user1)).json() as Alert
    assert.deepEqual(p2, p1, 'pausing again changes nothing')
    await api.testDb.db.updateTable('alerts').set({ next_run_at: '2020-01-01T00:00:00Z' }).where('id', '=', alert.id).execute()
    const t0 = Date.now()
    const resumed = await call('POST', `/api/alerts/${alert.id}/resume`, api.tokens.user1)
    assert.equal(resumed.statusCode, 200)
    const r1 = resumed.json() as Alert
    assert.equal(r1.status, 'active')
    assert.equal(r1.paused_by, null)
    assertNextTick(r1.next_run_at, t0, Date.now())
    const r2 = (await call('POST', `/api/alerts/${alert.id}/resume`, api.tokens.user1)).json() as Alert
    assert.deepEqual(r2, r1, 'resuming an active alert keeps its schedule')
  })

  it('resumes an alert paused by an unsubscribe link, keeps who paused first', async () => {
    const alert = await create(api.tokens.user1)
    await api.testDb.db.updateTable('alerts').set({ status: 'paused', paused_by: 'unsubscribe' }).where('id', '=', alert.id).execute()
    const again = (await call('POST', `/api/alerts/${alert.id}/pause`, api.tokens.user1)).json() as Alert
    assert.equal(again.paused_by, 'unsubscribe')
    const resumed = (await call('POST', `/api/alerts/${alert.id}/resume`, api.tokens.user1)).json() as Alert
    assert.equal(resumed.status, 'active')
    assert.equal(resumed.paused_by, null)
  })

  it("refuses another user's alert (404); an admin may pause and resume any", async () => {
    const alert = await create(api.tokens.user1)
    assert.equal((await call('POST', `/api/alerts/${alert.id}/pause`, api.tokens.user2)).statusCode, 404)
    assert.equal((await call('POST', `/api/alerts/${alert.id}/resume`, api.tokens.user2)).statusCode, 404)
    assert.equal(((await call('GET', `/api/alerts/${alert.id}`, api.tokens.user1)).json() as Alert).status, 'active')
    assert.equal(((await call('POST', `/api/alerts/${alert.id}/pause`, api.tokens.admin)).json() as Alert).status, 'paused')
    assert.equal(((await call('POST', `/api/alerts/${alert.id}/resume`, api.tokens.admin)).json() as Alert).status, 'active')
    assert.equal((await call('POST', '/api/alerts/987654321/pause', api.tokens.admin)).statusCode, 404)
  })
})

describe('GET /api/alerts', () => {
  /** Every page of `url` (limit `limit`), in order. */
  async function allPages(url: string, token: string, limit: number): Promise<{ ids: string[]; pages: number }> {
    const ids: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const sep = url.includes('?') ? '&' : '?'
      const res = await call('GET', `${url}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, token)
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { items: Alert[]; next_cursor: string | null }
      assert.ok(page.items.length <= limit)
      ids.push(...page.items.map((a) => a.id))
      cursor = page.next_cursor
      pages++
    } while (cursor !== null)
    return { ids, pages }
  }

  it('pages through 120 alerts newest first without repeats or gaps, even as new ones arrive', async () => {
    const created: string[] = []
    for (let i = 0; i < 120; i++) created.push((await create(user3, { phrase: `camera ${i}` })).id)
    const expected = [...created].sort((a, b) => Number(b) - Number(a))
    const { ids, pages } = await allPages('/api/alerts', user3, 7)
    assert.equal(pages, 18)
    assert.deepEqual(ids, expected)

    // A page boundary, a new alert, then the rest: the rest continues where the first page ended.
    const first = (await call('GET', '/api/alerts?limit=50', user3)).json() as { items: Alert[]; next_cursor: string }
    const newer = await create(user3, { phrase: 'camera new' })
    const rest = await allPages(`/api/alerts?cursor=${first.next_cursor}`, user3, 200)
    const seen = [...first.items.map((a) => a.id), ...rest.ids]
    assert.deepEqual(seen, expected)
    assert.ok(!seen.includes(newer.id))
  })

  it("lists a user's own alerts only; an admin's everyone's or one user's; filters by email and status", async () => {
    const mine = await create(api.tokens.user2, { email: 'Filter.Me@Example.com' })
    await call('POST', `/api/alerts/${mine.id}/pause`, api.tokens.user2)
    const user2 = await allPages('/api/alerts', api.tokens.user2, 200)
    const rows = await api.testDb.db.selectFrom('alerts').select(['id', 'user_id', 'email', 'status']).orderBy('id', 'desc').execute()
    assert.deepEqual(user2.ids, rows.filter((r) => r.user_id === 'user2').map((r) => r.id))
    assert.deepEqual((await allPages('/api/alerts', api.tokens.admin, 200)).ids, rows.map((r) => r.id))
    assert.deepEqual((await allPages('/api/alerts?user_id=user3', api.tokens.admin, 200)).ids, rows.filter((r) => r.user_id === 'user3').map((r) => r.id))
    assert.deepEqual((await allPages('/api/alerts?user_id=user2', api.tokens.user2, 200)).ids, user2.ids, 'a user may name itself')
    const byEmail = await allPages(`/api/alerts?email=${encodeURIComponent('Filter.Me@EXAMPLE.COM')}`, api.tokens.user2, 200)
    assert.deepEqual(byEmail.ids, [mine.id])
    const paused = await allPages('/api/alerts?status=paused', api.tokens.admin, 200)
    assert.deepEqual(paused.ids, rows.filter((r) => r.status === 'paused').map((r) => r.id))
    assert.ok(paused.ids.includes(mine.id))
    const active = await allPages('/api/alerts?status=active&user_id=user2', api.tokens.admin, 200)
    assert.ok(!active.ids.includes(mine.id))
  })

  it('answers 403 for another user named, 400 naming the query field otherwise', async () => {
    const other = await call('GET', '/api/alerts?user_id=user1', api.tokens.user2)
    assert.equal(other.statusCode, 403)
    const cases: Array<[string, string]> = [
      ['cursor=bm90LWEtY3Vyc29y', 'querystring.cursor'],
      [`cursor=${Buffer.from(JSON.stringify(['x'])).toString('base64url')}`, 'querystring.cursor'],
      [`cursor=${Buffer.from(JSON.stringify(['99999999999999999999'])).toString('base64url')}`, 'querystring.cursor'],
      [`cursor=${Buffer.from(JSON.stringify(['1', '2'])).toString('base64url')}`, 'querystring.cursor'],
      ['limit=0', 'querystring.limit'],
      ['limit=201', 'querystring.limit'],
      ['limit=x', 'querystring.limit'],
      ['status=gone', 'querystring.status'],
      ['email=not-an-address', 'querystring.email'],
      ['user_id=a%20b', 'querystring.user_id'],
      ['colour=red', 'querystring.colour'],
    ]
    for (const [query, field] of cases) {
      const res = await call('GET', `/api/alerts?${query}`, api.tokens.user1)
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`)
      const { details } = errorOf(res)
      const fields = Array.isArray(details) ? details.map((d: { field: string }) => d.field) : [(details as { field: string }).field]
      assert.deepEqual(fields, [field], query)
    }
    assert.equal(errorOf(await call('GET', '/api/alerts?cursor=bm90LWEtY3Vyc29y', api.tokens.user1)).code, 'invalid_cursor')
  })
})

describe('runs, items and price history', () => {
  let alert: Alert
  let runIds: string[]
  const T = (minute: number) => new Date(Date.UTC(2026, 0, 2, 9, minute)).toISOString()

  before(async () => {
    alert = await create(api.tokens.user1, { phrase: 'vintage lens' })
    runIds = await insertRuns(api.testDb.db, alert.id, [
      { dueAt: T(0), itemCount: 3, resultTotal: 250, cheapestTotal: '119.99', cheapestCurrency: 'EUR', finishedAt: T(0) },
      { dueAt: T(10), itemCount: 2, resultTotal: 2, cheapestTotal: '0.10000000000000000001', cheapestCurrency: 'EUR', skippedItems: [{ item_id: 'v1|9|0', reason: 'no price' }], finishedAt: T(10) },
      { dueAt: T(20), status: 'failed', attempts: 5, error: 'eBay answered 503', finishedAt: T(21) },
      { dueAt: T(30), itemCount: 0, resultTotal: 0, finishedAt: T(30) },
      { dueAt: T(40), status: 'queued', attempts: 0 },
    ])
    await insertItems(api.testDb.db, runIds[0]!, 3)
    await insertItems(api.testDb.db, runIds[1]!, 2)
    // Another alert's runs and items never show.
    const other = await create(api.tokens.user1, { phrase: 'other lens' })
    const [otherRun] = await insertRuns(api.testDb.db, other.id, [{ dueAt: T(5), cheapestTotal: '1', cheapestCurrency: 'EUR' }])
    await insertItems(api.testDb.db, otherRun!, 4)
  })

  it('lists the runs newest due time first, with what each did', async () => {
    const res = await call('GET', `/api/alerts/${alert.id}/runs`, api.tokens.user1)
    assert.equal(res.statusCode, 200, res.body)
    const page = res.json() as { items: Array<Record<string, unknown>>; next_cursor: string | null }
    assert.equal(page.next_cursor, null)
    assert.deepEqual(page.items.map((r) => r.id), [...runIds].reverse())
    assert.deepEqual(page.items.map((r) => Date.parse(r.due_at as string)), [40, 30, 20, 10, 0].map((m) => Date.parse(T(m))))
    assert.deepEqual(page.items[3], {
      id: runIds[1],
      due_at: '2026-01-02T09:10:00.000000Z',
      status: 'done',
      attempts: 1,
      item_count: 2,
      result_total: 2,
      cheapest_total: '0.10000000000000000001',
      cheapest_currency: 'EUR',
      skipped_items: [{ item_id: 'v1|9|0', reason: 'no price' }],
      error: null,
      finished_at: T(10),
    })
    assert.equal(page.items[2]!.status, 'failed')
    assert.equal(page.items[2]!.error, 'eBay answered 503')
    assert.equal(page.items[0]!.finished_at, null)
  })

  it('pages the runs without repeats; 404 for another user, 400 for a bad cursor', async () => {
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const res = await call('GET', `/api/alerts/${alert.id}/runs?limit=2${cursor ? `&cursor=${cursor}` : ''}`, api.tokens.admin)
      const page = res.json() as { items: Array<{ id: string }>; next_cursor: string | null }
      seen.push(...page.items.map((r) => r.id))
      cursor = page.next_cursor
    } while (cursor !== null)
    assert.deepEqual(seen, [...runIds].reverse())
    assert.equal((await call('GET', `/api/alerts/${alert.id}/runs`, api.tokens.user2)).statusCode, 404)
    const bad = await call('GET', `/api/alerts/${alert.id}/runs?cursor=${Buffer.from(JSON.stringify(['yesterday'])).toString('base64url')}`, api.tokens.user1)
    assert.equal(bad.statusCode, 400)
    assert.deepEqual(errorOf(bad).details, { field: 'querystring.cursor' })
  })

  it("lists the items newest run first, each run's by position, paged over (due time, position)", async () => {
    const all = (await call('GET', `/api/alerts/${alert.id}/items`, api.tokens.user1)).json() as { items: Array<Record<string, unknown>> }
    assert.deepEqual(
      all.items.map((i) => [i.run_id, i.position]),
      [[runIds[1], 0], [runIds[1], 1], [runIds[0], 0], [runIds[0], 1], [runIds[0], 2]],
    )
    assert.deepEqual(all.items[0], {
      run_id: runIds[1],
      due_at: '2026-01-02T09:10:00.000000Z',
      position: 0,
      item_id: `v1|${runIds[1]}0|0`,
      title: `Item 0 of run ${runIds[1]}`,
      price: '10.99',
      currency: 'EUR',
      shipping: '0.00',
      total: '10.99',
      item_web_url: `https://www.ebay.de/itm/${runIds[1]}0`,
      image_url: `https://i.ebayimg.com/${runIds[1]}0.jpg`,
    })
    assert.equal(all.items[1]!.shipping, null)
    const seen: unknown[] = []
    let cursor: string | null = null
    do {
      const res = await call('GET', `/api/alerts/${alert.id}/items?limit=2${cursor ? `&cursor=${cursor}` : ''}`, api.tokens.user1)
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { items: Array<Record<string, unknown>>; next_cursor: string | null }
      seen.push(...page.items.map((i) => [i.run_id, i.position]))
      cursor = page.next_cursor
    } while (cursor !== null)
    assert.deepEqual(seen, all.items.map((i) => [i.run_id, i.position]))
  })

  it("filters the items by run: 404 naming run_id for another alert's run, 400 for a malformed one", async () => {
    const one = (await call('GET', `/api/alerts/${alert.id}/items?run_id=${runIds[0]}`, api.tokens.user1)).json() as { items: Array<{ run_id: string }> }
    assert.equal(one.items.length, 3)
    assert.ok(one.items.every((i) => i.run_id === runIds[0]))
    const empty = (await call('GET', `/api/alerts/${alert.id}/items?run_id=${runIds[2]}`, api.tokens.user1)).json() as { items: unknown[] }
    assert.deepEqual(empty.items, [])
    const [foreign] = await insertRuns(api.testDb.db, (await create(api.tokens.user1)).id, [{ dueAt: T(50) }])
    const notOurs = await call('GET', `/api/alerts/${alert.id}/items?run_id=${foreign}`, api.tokens.user1)
    assert.equal(notOurs.statusCode, 404)
    assert.deepEqual(errorOf(notOurs).details, { field: 'querystring.run_id' })
    for (const runId of ['x', '1.5', '9223372036854775808']) {
      const bad = await call('GET', `/api/alerts/${alert.id}/items?run_id=${runId}`, api.tokens.user1)
      assert.equal(bad.statusCode, 400, runId)
      assert.deepEqual(fieldsOf(bad), ['querystring.run_id'])
    }
    assert.equal((await call('GET', `/api/alerts/${alert.id}/items`, api.tokens.user2)).statusCode, 404)
  })

  it('gives the cheapest total of each done run, oldest first, within [from, to)', async () => {
    const res = await call('GET', `/api/alerts/${alert.id}/price-history`, api.tokens.user1)
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), {
      points: [
        { due_at: '2026-01-02T09:00:00.000000Z', cheapest_total: '119.99', currency: 'EUR' },
        { due_at: '2026-01-02T09:10:00.000000Z', cheapest_total: '0.10000000000000000001', currency: 'EUR' },
      ],
      truncated: false,
    })
    const ranged = (await call('GET', `/api/alerts/${alert.id}/price-history?from=${T(5)}&to=${T(10)}`, api.tokens.user1)).json() as { points: unknown[] }
    assert.deepEqual(ranged.points, [])
    const fromOnly = (await call('GET', `/api/alerts/${alert.id}/price-history?from=${encodeURIComponent('2026-01-02T10:05:00+01:00')}`, api.tokens.user1)).json() as { points: Array<{ due_at: string }> }
    assert.deepEqual(fromOnly.points.map((p) => p.due_at), ['2026-01-02T09:10:00.000000Z'])
    assert.equal((await call('GET', `/api/alerts/${alert.id}/price-history`, api.tokens.user2)).statusCode, 404)
  })

  it('refuses a bad range, naming the field', async () => {
    const cases: Array<[string, string]> = [
      [`from=${T(10)}&to=${T(0)}`, 'querystring.to'],
      ['from=yesterday', 'querystring.from'],
      ['to=2026-01-02', 'querystring.to'],
      ['from=0000-01-01T00:00:00Z', 'querystring.from'],
      ['from=2026-06-30T23:59:60Z', 'querystring.from'],
      ['since=2026-01-01T00:00:00Z', 'querystring.since'],
    ]
    for (const [query, field] of cases) {
      const res = await call('GET', `/api/alerts/${alert.id}/price-history?${query}`, api.tokens.user1)
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`)
      assert.deepEqual(fieldsOf(res), [field], query)
    }
  })

  it('answers at most 5000 points, the newest, and says it truncated', async () => {
    const big = await create(api.tokens.user1, { phrase: 'many runs' })
    await insertDoneRunSeries(api.testDb.db, big.id, '2025-01-01T00:00:00Z', 5003)
    const res = await call('GET', `/api/alerts/${big.id}/price-history`, api.tokens.user1)
    const history = res.json() as { points: Array<{ due_at: string; cheapest_total: string }>; truncated: boolean }
    assert.equal(history.truncated, true)
    assert.equal(history.points.length, 5000)
    assert.equal(history.points[0]!.cheapest_total, '4')
    assert.equal(history.points.at(-1)!.cheapest_total, '5003')
    assert.ok(history.points.every((p, i) => i === 0 || p.due_at > history.points[i - 1]!.due_at))
    const exact = (await call('GET', `/api/alerts/${big.id}/price-history?to=${encodeURIComponent('2025-01-01T01:00:00Z')}`, api.tokens.user1)).json() as { points: unknown[]; truncated: boolean }
    assert.equal(exact.points.length, 60)
    assert.equal(exact.truncated, false)
  })
})

describe('the OpenAPI document', () => {
  it('documents every alerts route under the tag alerts, ids as strings', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/docs/json' })).json() as {
      paths: Record<string, Record<string, { tags?: string[]; security?: unknown[] }>>
      components?: unknown
    }
    const paths = Object.keys(doc.paths).filter((p) => p.startsWith('/api/alerts'))
    assert.deepEqual(paths.sort(), [
      '/api/alerts',
      '/api/alerts/unsubscribe/{token}',
      '/api/alerts/{id}',
      '/api/alerts/{id}/items',
      '/api/alerts/{id}/pause',
      '/api/alerts/{id}/price-history',
      '/api/alerts/{id}/resume',
      '/api/alerts/{id}/runs',
    ])
    for (const path of paths) {
      for (const [method, op] of Object.entries(doc.paths[path]!)) {
        assert.deepEqual(op.tags, ['alerts'], `${method} ${path}`)
        const secured = !path.includes('unsubscribe')
        assert.deepEqual(op.security, secured ? [{ bearer: [] }] : [], `${method} ${path}`)
      }
    }
    const text = JSON.stringify(doc.paths['/api/alerts'])
    assert.match(text, /64-bit integer written as a decimal string/)
  })
})
