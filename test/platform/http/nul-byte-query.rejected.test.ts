/**
 * A NUL byte (or an unpaired surrogate) anywhere in a request used to reach PostgreSQL,
 * which refuses NUL in `text` and `jsonb` (a 500) and turns a lone surrogate in `text`
 * into U+FFFD (stored other than sent). Every such request is now a 400 naming the
 * field, and nothing of it is stored or queued.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type EventsApi, openEventsApi, sampleEvent } from '../../helpers/events.ts'
import { endOffsets } from '../../helpers/topic-reader.ts'

let api: EventsApi
before(async () => {
  api = await openEventsApi()
})
after(async () => {
  await api.close()
})

interface Case {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST'
  url: string
  field: string
  token?: 'admin' | 'app' | 'user1'
  payload?: string
}

const listFilters = ['session_id', 'category', 'name', 'app', 'from', 'to', 'cursor']
const cases: Case[] = [
  ...['/api/events', '/api/event-errors'].flatMap((path) =>
    listFilters.flatMap((name) => [
      { method: 'GET' as const, url: `${path}?${name}=%00`, field: `querystring.${name}` },
      { method: 'GET' as const, url: `${path}?${name}=a%00b`, field: `querystring.${name}`, token: 'app' as const },
    ]),
  ),
  { method: 'GET', url: '/api/sessions/%00/events', field: 'params.session_id' },
  { method: 'GET', url: '/api/sessions/s%00/events?cursor=%00', field: 'params.session_id', token: 'app' },
  { method: 'GET', url: '/api/sessions/s1/events?cursor=x%00', field: 'querystring.cursor' },
  { method: 'GET', url: '/api/event-types/%00/pageview', field: 'params.category' },
  { method: 'GET', url: '/api/event-types/page%20interaction/page%00view', field: 'params.name' },
  { method: 'DELETE', url: '/api/event-types/%00/pageview', field: 'params.category' },
  { method: 'PUT', url: '/api/event-types/a%00/b', field: 'params.category', payload: '{"schema":{"type":"object"}}' },
  { method: 'PUT', url: '/api/event-types/a/b', field: 'body.description', payload: '{"schema":{"type":"object"},"description":"x\\u0000"}' },
  { method: 'PUT', url: '/api/event-types/a/b', field: 'body.description', payload: '{"schema":{"type":"object"},"description":"\\ud800"}' },
  { method: 'PUT', url: '/api/event-types/a/b', field: 'body.schema.title', payload: '{"schema":{"type":"object","title":"\\u0000"}}' },
  { method: 'PUT', url: '/api/event-types/a/b', field: 'body.schema.title', payload: '{"schema":{"type":"object","title":"\\udc00x"}}' },
  { method: 'GET', url: '/api/orders?user=%00', field: 'querystring.user' },
  { method: 'GET', url: '/api/orders?cursor=%00', field: 'querystring.cursor', token: 'user1' },
  { method: 'GET', url: '/api/users/user%00/transactions', field: 'params.user', token: 'user1' },
]

const event = (extra: Record<string, unknown> = {}) => JSON.stringify(sampleEvent(undefined, extra))
/** Events PostgreSQL could not store: the intake queued them, and the worker could store neither them nor an error. */
const intakeCases: Array<{ payload: string; field: string }> = [
  { payload: event({ session_id: 's\u0000' }), field: 'body.session_id' },
  { payload: event({ category: '\u0000' }), field: 'body.category' },
  { payload: event({ name: 'page\u0000view' }), field: 'body.name' },
  { payload: event({ timestamp: '2021-01-01 09:15:27\u0000' }), field: 'body.timestamp' },
  { payload: event({ data: { host: 'h', path: '/\u0000' } }), field: 'body.data.path' },
  { payload: event({ data: { host: 'h', path: '/', '\u0000': 1 } }), field: 'body.data.\u0000' },
  { payload: event({ data: { host: 'h', path: '/', deep: [{ x: ['\ud800'] }] } }), field: 'body.data.deep[0].x[0]' },
  { payload: `[${event()},${event({ data: { host: '\udfff', path: '/' } })}]`, field: 'body[1].data.host' },
]

test('NUL or an unpaired surrogate in a query, a path parameter or a JSON body is a 400 naming the field', async () => {
  const failures: string[] = []
  for (const c of cases) {
    const headers: Record<string, string> = api.auth(api.tokens[c.token ?? 'admin'])
    if (c.payload !== undefined) headers['content-type'] = 'application/json'
    const res = await api.app.inject({ method: c.method, url: c.url, headers, ...(c.payload !== undefined && { payload: c.payload }) })
    const body = res.json() as { error?: { code?: string; details?: Array<{ field: string }> } }
    if (res.statusCode !== 400 || body.error?.details?.[0]?.field !== c.field) {
      failures.push(`${c.method} ${c.url} ${c.payload ?? ''}: ${res.statusCode} ${res.body.slice(0, 160)}`)
    }
  }
  assert.deepEqual(failures, [])
  const types = await api.testDb.db.selectFrom('event_types').select('category').where('category', '=', 'a').execute()
  assert.deepEqual(types, [], 'no event type was stored')
})

test('the intake refuses events PostgreSQL could not store, and queues none of them', async () => {
  const sum = async () => (await endOffsets(api.topic)).reduce((a, b) => a + b, 0n)
  const before = await sum()
  for (const { payload, field } of intakeCases) {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/events',
      headers: { ...api.auth(api.tokens.app), 'content-type': 'application/json' },
      payload,
    })
    assert.equal(res.statusCode, 400, `${payload}: ${res.body}`)
    assert.equal((res.json() as { error: { details: Array<{ field: string }> } }).error.details[0]?.field, field, payload)
  }
  assert.equal(await sum(), before, 'nothing reached the topic')
  // Escaped backslashes before a `u` are text, not an escape: stored as sent.
  const fine = await api.app.inject({
    method: 'POST',
    url: '/api/events',
    headers: { ...api.auth(api.tokens.app), 'content-type': 'application/json' },
    payload: event({ data: { host: '\\u0000', path: '😀' } }),
  })
  assert.equal(fine.statusCode, 202, fine.body)
})
