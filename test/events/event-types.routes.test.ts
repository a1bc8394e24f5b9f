/** The admin API of the event type registry, through the whole API app (real PostgreSQL, Redis, Kafka). */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

const ctaUrl = '/api/event-types/page%20interaction/cta%20click'
const videoUrl = '/api/event-types/video/play'
const videoSchema = { type: 'object', required: ['seconds'], properties: { seconds: { type: 'number' } } }

test('only an admin token may use it: 401 without a token, 403 with a user token, before the body is read', async () => {
  const requests = [
    { method: 'GET' as const, url: '/api/event-types' },
    { method: 'GET' as const, url: ctaUrl },
    { method: 'PUT' as const, url: videoUrl, payload: { schema: videoSchema } },
    { method: 'PUT' as const, url: videoUrl, payload: { not: 'a valid body' } },
    { method: 'DELETE' as const, url: ctaUrl },
  ]
  for (const request of requests) {
    const anonymous = await api.app.inject(request)
    assert.equal(anonymous.statusCode, 401, `${request.method} ${request.url}`)
    const user = await api.app.inject({ ...request, headers: api.auth(api.tokens.user1) })
    assert.equal(user.statusCode, 403, `${request.method} ${request.url}`)
    assert.equal(user.json().error.code, 'forbidden')
  }
  const stillThere = await api.app.inject({ method: 'GET', url: ctaUrl, headers: api.auth(api.tokens.admin) })
  assert.equal(stillThere.statusCode, 200)
})

test('list and show, with URL-encoded categories and names', async () => {
  const list = await api.app.inject({ method: 'GET', url: '/api/event-types', headers: api.auth(api.tokens.admin) })
  assert.equal(list.statusCode, 200)
  const { items } = list.json() as { items: Array<{ category: string; name: string }> }
  assert.deepEqual(
    items.map((t) => `${t.category}/${t.name}`),
    ['form interaction/submit', 'page interaction/cta click', 'page interaction/pageview'],
  )
  const one = await api.app.inject({ method: 'GET', url: ctaUrl, headers: api.auth(api.tokens.admin) })
  assert.equal(one.statusCode, 200)
  const body = one.json() as { category: string; name: string; schema: { required: string[] }; description: null; created_at: string }
  assert.equal(body.category, 'page interaction')
  assert.equal(body.name, 'cta click')
  assert.deepEqual(body.schema.required, ['host', 'path', 'element'])
  assert.equal(body.description, null)
  assert.ok(!Number.isNaN(Date.parse(body.created_at)))

  const missing = await api.app.inject({ method: 'GET', url: '/api/event-types/page%20interaction/nothing', headers: api.auth(api.tokens.admin) })
  assert.equal(missing.statusCode, 404)
  assert.match(missing.json().error.message, /no event type "page interaction" \/ "nothing"/)
})

test('PUT registers (201) then replaces (200); DELETE removes (204, then 404)', async () => {
  const headers = api.auth(api.tokens.admin)
  const created = await api.app.inject({ method: 'PUT', url: videoUrl, headers, payload: { schema: videoSchema, description: 'a video starts' } })
  assert.equal(created.statusCode, 201, created.body)
  assert.deepEqual(created.json().schema, videoSchema)
  assert.equal(created.json().description, 'a video starts')

  const replaced = await api.app.inject({ method: 'PUT', url: videoUrl, headers, payload: { schema: { type: 'object' } } })
  assert.equal(replaced.statusCode, 200, replaced.body)
  assert.deepEqual(replaced.json().schema, { type: 'object' })
  assert.equal(replaced.json().description, null, 'PUT replaces: no description means none')

  const shown = await api.app.inject({ method: 'GET', url: videoUrl, headers })
  assert.deepEqual(shown.json().schema, { type: 'object' })

  const deleted = await api.app.inject({ method: 'DELETE', url: videoUrl, headers })
  assert.equal(deleted.statusCode, 204)
  assert.equal(deleted.body, '')
  assert.equal((await api.app.inject({ method: 'DELETE', url: videoUrl, headers })).statusCode, 404)
  assert.equal((await api.app.inject({ method: 'GET', url: videoUrl, headers })).statusCode, 404)
})

test('an invalid JSON Schema is answered 400 naming the problem, and nothing changes', async () => {
  const headers = api.auth(api.tokens.admin)
  const cases: Array<[unknown, string, RegExp]> = [
    [{ type: 'object', propertys: {} }, 'invalid_schema', /strict mode: unknown keyword: "propertys"/],
    [{ type: 'objekt' }, 'invalid_schema', /not a valid JSON Schema: \/type must be equal to one of the allowed values/],
    [{ type: 'object', required: ['host'] }, 'invalid_schema', /required property "host" is not defined/],
    ['not an object', 'validation_failed', /body\.schema/],
  ]
  for (const [schema, code, message] of cases) {
    const res = await api.app.inject({ method: 'PUT', url: ctaUrl, headers, payload: { schema } })
    assert.equal(res.statusCode, 400, res.body)
    const { error } = res.json() as { error: { code: string; message: string; details: Array<{ field: string }> } }
    assert.equal(error.code, code)
    assert.match(error.message, message)
    assert.equal(error.details[0]?.field, 'body.schema')
  }
  const unchanged = await api.app.inject({ method: 'GET', url: ctaUrl, headers })
  assert.deepEqual(unchanged.json().schema.required, ['host', 'path', 'element'])

  const unknownField = await api.app.inject({ method: 'PUT', url: ctaUrl, headers, payload: { schema: {}, extra: 1 } })
  assert.equal(unknownField.statusCode, 400)
  // Longer than a category may be: refused by the schema, naming the parameter.
  const tooLong = await api.app.inject({ method: 'PUT', url: `/api/event-types/${'x'.repeat(101)}/n`, headers, payload: { schema: {} } })
  assert.equal(tooLong.statusCode, 400)
  assert.match(tooLong.body, /params\.category/)
})
