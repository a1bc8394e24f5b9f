/**
 * One-click unsubscribe (RFC 8058): the signer (the key made once per database, tokens
 * bound to one alert, forgeries refused) on the real PostgreSQL, and the routes over HTTP:
 * a GET changes nothing, a POST pauses (again: the same answer), a forged or foreign token
 * is refused, a deleted alert is 404, no login is needed and the rate limit counts it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createUnsubscribeSigner, UNSUBSCRIBE_KEY_NAME, unsubscribeUrl } from '../../src/alerts/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { openAlertsApi } from '../helpers/alerts-api.ts'
import type { TradingApi } from '../helpers/trading.ts'

interface Alert {
  id: string
  status: string
  paused_by: string | null
  updated_at: string
}

/** `token` with its MAC's character at `index` (from the end) replaced. */
function altered(token: string, index = 1): string {
  const at = token.length - index
  const c = token[at] === 'A' ? 'B' : 'A'
  return token.slice(0, at) + c + token.slice(at + 1)
}

describe('the unsubscribe signer', () => {
  let testDb: TestDb
  before(async () => {
    testDb = await openTestDb()
  })
  after(async () => {
    await testDb.close()
  })

  it('makes the key once per database, on first use, shared by every signer', async () => {
    const rows = () => testDb.db.selectFrom('alert_signing_keys').selectAll().execute()
    assert.deepEqual(await rows(), [])
    const signers = Array.from({ length: 8 }, () => createUnsubscribeSigner(testDb.db))
    // First uses at once: one key, which all of them use.
    const tokens = await Promise.all(signers.map((signer) => signer.tokenFor('42')))
    assert.equal(new Set(tokens).size, 1)
    const keys = await rows()
    assert.equal(keys.length, 1)
    assert.equal(keys[0]!.name, UNSUBSCRIBE_KEY_NAME)
    assert.equal(Buffer.from(keys[0]!.secret, 'base64url').length, 32)
    assert.equal(await createUnsubscribeSigner(testDb.db).verify(tokens[0]!), '42')
  })

  it("binds a token to its alert: another alert's id with it, or any change, does not verify", async () => {
    const signer = createUnsubscribeSigner(testDb.db)
    const a = await signer.tokenFor('7')
    const b = await signer.tokenFor('8')
    assert.match(a, /^7\.[A-Za-z0-9_-]{43}$/)
    assert.equal(await signer.verify(a), '7')
    assert.equal(await signer.verify(b), '8')
    const macA = a.split('.')[1]!
    assert.equal(await signer.verify(`8.${macA}`), undefined, "alert 7's MAC does not open alert 8")
    assert.equal(await signer.verify(`07.${macA}`), undefined)
    assert.equal(await signer.verify(altered(a)), undefined)
    assert.equal(await signer.verify(altered(a, 20)), undefined)
    // The last character carries 2 spare bits: the same MAC written otherwise is refused too.
    const last = macA.at(-1)!
    const sibling = 'AEIMQUYcgkosw048'.includes(last) ? String.fromCharCode(last.charCodeAt(0) + 1) : last
    if (sibling !== last) assert.equal(await signer.verify(`7.${macA.slice(0, -1)}${sibling}`), undefined)
  })

  it('refuses malformed tokens and makes none for what is not an alert id', async () => {
    const signer = createUnsubscribeSigner(testDb.db)
    const good = await signer.tokenFor('5')
    for (const token of ['', '5', '5.', `.${good.split('.')[1]}`, `${good}x`, good.slice(0, -1), `x${good}`, good.replace('.', '-'), `0.${good.split('.')[1]}`, `9223372036854775808.${good.split('.')[1]}`, `5.${'A'.repeat(44)}`, `5.${'='.repeat(43)}`]) {
      assert.equal(await signer.verify(token), undefined, JSON.stringify(token))
    }
    for (const id of ['0', '-1', '1.5', 'abc', '9223372036854775808', '']) {
      await assert.rejects(signer.tokenFor(id), RangeError, id)
    }
    assert.match(await signer.tokenFor('9223372036854775807'), /^9223372036854775807\./)
  })

  it("does not verify another database's tokens (each has its own key)", async () => {
    const other = await openTestDb()
    try {
      const token = await createUnsubscribeSigner(other.db).tokenFor('3')
      assert.equal(await createUnsubscribeSigner(testDb.db).verify(token), undefined)
    } finally {
      await other.close()
    }
  })

  it('writes the link under PUBLIC_URL', () => {
    assert.equal(unsubscribeUrl('https://bourse.example.com', '12.abc_-'), 'https://bourse.example.com/api/alerts/unsubscribe/12.abc_-')
    assert.equal(unsubscribeUrl('http://127.0.0.1:8000//', '1.x'), 'http://127.0.0.1:8000/api/alerts/unsubscribe/1.x')
  })
})

describe('the unsubscribe routes', () => {
  let api: TradingApi
  let alertA: Alert
  let alertB: Alert
  let tokenA: string
  let tokenB: string
  const signer = () => createUnsubscribeSigner(api.testDb.db)
  const path = (token: string) => new URL(unsubscribeUrl('http://x', token)).pathname
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const oneClick = (token: string, headers: Record<string, string> = {}) =>
    api.app.inject({ method: 'POST', url: path(token), headers: { ...form, ...headers }, payload: 'List-Unsubscribe=One-Click' })
  const alertNow = async (id: string) =>
    (await api.app.inject({ method: 'GET', url: `/api/alerts/${id}`, headers: api.auth(api.tokens.admin) })).json() as Alert

  before(async () => {
    api = await openAlertsApi()
    const create = async (phrase: string) => {
      const res = await api.app.inject({
        method: 'POST',
        url: '/api/alerts',
        headers: api.auth(api.tokens.user1),
        payload: { email: 'ada@example.com', phrase, frequency_minutes: 10 },
      })
      assert.equal(res.statusCode, 201, res.body)
      return res.json() as Alert
    }
    alertA = await create('Fountain <pen> & "ink"')
    alertB = await create('pencil')
    tokenA = await signer().tokenFor(alertA.id)
    tokenB = await signer().tokenFor(alertB.id)
  })
  after(async () => {
    await api.close()
  })

  it('GET shows a page whose button posts, and changes nothing (mail scanners fetch links)', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await api.app.inject({ method: 'GET', url: path(tokenA), headers: { accept: '*/*' } })
      assert.equal(res.statusCode, 200)
      assert.match(String(res.headers['content-type']), /^text\/html/)
      assert.match(res.body, /<form method="post">/)
      assert.match(res.body, /name="List-Unsubscribe" value="One-Click"/)
      // The phrase is text, never markup.
      assert.ok(res.body.includes('Fountain &#60;pen&#62; &#38; &#34;ink&#34;'))
      assert.ok(!res.body.includes('<pen>'))
      assert.match(String(res.headers['content-security-policy']), /default-src 'none'; style-src 'sha256-[^']+'; form-action 'self'/)
    }
    assert.equal((await alertNow(alertA.id)).status, 'active')
  })

  it('POST as a mail client sends it (List-Unsubscribe=One-Click, no login) pauses the alert', async () => {
    const res = await oneClick(tokenA)
    assert.equal(res.statusCode, 200, res.body)
    assert.deepEqual(res.json(), { alert_id: alertA.id, phrase: 'Fountain <pen> & "ink"', status: 'paused', paused_by: 'unsubscribe' })
    const paused = await alertNow(alertA.id)
    assert.equal(paused.status, 'paused')
    assert.equal(paused.paused_by, 'unsubscribe')
    assert.equal((await alertNow(alertB.id)).status, 'active', 'only that alert')
  })

  it('POST again (a second click, a retry) answers the same and changes nothing', async () => {
    const before = await alertNow(alertA.id)
    const res = await oneClick(tokenA)
    assert.equal(res.statusCode, 200)
    assert.equal((res.json() as { status: string }).status, 'paused')
    assert.deepEqual(await alertNow(alertA.id), before)
    const page = await api.app.inject({ method: 'GET', url: path(tokenA) })
    assert.match(page.body, /Already unsubscribed/)
    assert.doesNotMatch(page.body, /<form/)
  })

  it('takes the POST as multipart/form-data, as a JSON object, or with no body at all', async () => {
    const multipart = async (token: string) => {
      const boundary = 'x-boundary-1'
      const payload = `--${boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--${boundary}--\r\n`
      return api.app.inject({ method: 'POST', url: path(token), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, payload })
    }
    const cases = [
      () => multipart(tokenB),
      () => api.app.inject({ method: 'POST', url: path(tokenB), payload: {} }),
      () => api.app.inject({ method: 'POST', url: path(tokenB) }),
      () => api.app.inject({ method: 'POST', url: path(tokenB), headers: form, payload: '' }),
    ]
    for (const send of cases) {
      await api.app.inject({ method: 'POST', url: `/api/alerts/${alertB.id}/resume`, headers: api.auth(api.tokens.user1) })
      const res = await send()
      assert.equal(res.statusCode, 200, res.body)
      assert.equal((await alertNow(alertB.id)).status, 'paused')
    }
  })

  it('answers a browser (Accept: text/html) with a page', async () => {
    const res = await oneClick(tokenB, { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^text\/html/)
    assert.match(res.body, /Unsubscribed/)
    assert.match(res.body, /pencil/)
  })

  it("refuses a forged token, and alert A's token used for alert B (400 invalid_unsubscribe_link)", async () => {
    await api.app.inject({ method: 'POST', url: `/api/alerts/${alertB.id}/resume`, headers: api.auth(api.tokens.user1) })
    const macA = tokenA.split('.')[1]!
    for (const token of [`${alertB.id}.${macA}`, altered(tokenB), `${alertB.id}.${'A'.repeat(43)}`, 'garbage', `${alertB.id}`]) {
      const res = await oneClick(token)
      assert.equal(res.statusCode, 400, `${token}: ${res.body}`)
      const error = (res.json() as { error: { code: string; message: string; details: unknown } }).error
      assert.equal(error.code, 'invalid_unsubscribe_link')
      assert.deepEqual(error.details, { field: 'params.token' })
      const page = await api.app.inject({ method: 'GET', url: path(token) })
      assert.equal(page.statusCode, 400)
      assert.match(page.body, /Link not valid/)
    }
    assert.equal((await alertNow(alertB.id)).status, 'active')
    const tooLong = await oneClick(`1.${'A'.repeat(300)}`)
    assert.equal(tooLong.statusCode, 400)
  })

  it('answers 404 for the token of an alert deleted since', async () => {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/alerts',
      headers: api.auth(api.tokens.user2),
      payload: { email: 'gone@example.com', phrase: 'short-lived', frequency_minutes: 2 },
    })
    const gone = res.json() as Alert
    const token = await signer().tokenFor(gone.id)
    assert.equal((await api.app.inject({ method: 'DELETE', url: `/api/alerts/${gone.id}`, headers: api.auth(api.tokens.user2) })).statusCode, 204)
    const post = await oneClick(token)
    assert.equal(post.statusCode, 404)
    assert.equal((post.json() as { error: { code: string } }).error.code, 'not_found')
    const page = await api.app.inject({ method: 'GET', url: path(token) })
    assert.equal(page.statusCode, 404)
    assert.match(page.body, /Alert not found/)
  })

  it('needs no login, ignores a token of someone else, and is rate-limited like any public route', async () => {
    await api.app.inject({ method: 'POST', url: `/api/alerts/${alertB.id}/resume`, headers: api.auth(api.tokens.user1) })
    const res = await oneClick(tokenB, api.auth(api.tokens.user2))
    assert.equal(res.statusCode, 200)
    assert.ok(res.headers['x-ratelimit-limit'] !== undefined, 'counted by the rate limit')
    const limited = await openAlertsApi({ RATE_LIMIT_MAX: '2' })
    try {
      const token = await createUnsubscribeSigner(limited.testDb.db).tokenFor('1')
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) {
        statuses.push((await limited.app.inject({ method: 'POST', url: path(token), headers: form, payload: 'List-Unsubscribe=One-Click' })).statusCode)
      }
      assert.deepEqual(statuses, [404, 404, 429])
    } finally {
      await limited.close()
    }
  })

  it('refuses a form field given twice or holding NUL, naming it', async () => {
    await api.app.inject({ method: 'POST', url: `/api/alerts/${alertB.id}/resume`, headers: api.auth(api.tokens.user1) })
    const twice = await api.app.inject({ method: 'POST', url: path(tokenB), headers: form, payload: 'List-Unsubscribe=One-Click&List-Unsubscribe=One-Click' })
    assert.equal(twice.statusCode, 400)
    assert.deepEqual((twice.json() as { error: { details: unknown } }).error.details, [{ field: 'body.List-Unsubscribe', message: 'is given more than once' }])
    const nul = await api.app.inject({ method: 'POST', url: path(tokenB), headers: form, payload: 'List-Unsubscribe=One%00Click' })
    assert.equal(nul.statusCode, 400)
    assert.equal((await alertNow(alertB.id)).status, 'active')
  })
})
