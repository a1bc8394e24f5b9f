/**
 * The event query routes over HTTP (`app.inject`) on the real PostgreSQL: answers, order
 * and keyset paging to the microsecond, every filter, the 400s naming their field, and
 * who sees what (application, admin and user tokens).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createApp } from '../../src/events/apps.repository.ts'
import { type EventRowSpec, type EventErrorRowSpec, insertEventErrorRows, insertEventRows, microsAfter } from '../helpers/event-rows.ts'
import { type EventsApi, openEventsApi } from '../helpers/events.ts'
import { uniqueName } from '../helpers/infra.ts'

type Json = Record<string, unknown>
interface PageBody<T> {
  items: T[]
  next_cursor: string | null
}
interface EventItem {
  id: string
  app: string
  session_id: string
  category: string
  name: string
  data: Json
  timestamp: string
  received_at: string
  stored_at: string
  validated: boolean
}
interface ErrorItem {
  id: string
  app: string
  session_id: string | null
  category: string | null
  name: string | null
  raw: unknown
  reasons: Array<{ field: string; message: string }>
  received_at: string
  stored_at: string
}

const T0 = '2021-01-01T09:00:00.000Z'
const at = (micros: number) => microsAfter(T0, micros)

let api: EventsApi
let appA: { id: string; name: string }
let appB: { id: string; name: string; token: string }
/** Every inserted event with its id, newest first as the API orders them. */
let events: Array<EventRowSpec & { id: string }>
let errorRows: Array<EventErrorRowSpec & { id: string }>

const get = (url: string, token?: string) =>
  api.app.inject({ method: 'GET', url, headers: token === undefined ? {} : api.auth(token) })
const errorOf = (res: { json: () => unknown }) => (res.json() as { error: { code: string; message: string; details?: unknown } }).error

/** Every item of a listing, following `next_cursor` page by page. */
async function walk<T>(url: string, token: string, limit: number): Promise<{ items: T[]; pages: number }> {
  const items: T[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const sep = url.includes('?') ? '&' : '?'
    const res = await get(`${url}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, token)
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as PageBody<T>
    assert.ok(body.items.length <= limit)
    items.push(...body.items)
    cursor = body.next_cursor
    pages++
    assert.ok(pages < 100, 'paging does not end')
  } while (cursor !== null)
  return { items, pages }
}

const byTimeDesc = <T extends { id: string }>(time: (row: T) => string) => (a: T, b: T) =>
  time(b).localeCompare(time(a)) || b.id.localeCompare(a.id)

before(async () => {
  api = await openEventsApi()
  const db = api.testDb.db
  const nameA = await db.selectFrom('apps').select('name').where('id', '=', api.appId).executeTakeFirstOrThrow()
  appA = { id: api.appId, name: nameA.name }
  appB = await createApp(db, uniqueName('other-app'))
  const specs: EventRowSpec[] = [
    // Session s1 of app A: 1 µs apart, two in the same microsecond, then ms apart.
    { appId: appA.id, sessionId: 's1', at: at(0), name: 'pageview' },
    { appId: appA.id, sessionId: 's1', at: at(1), name: 'cta click', data: { host: 'h', path: '/', element: 'chat bubble' } },
    { appId: appA.id, sessionId: 's1', at: at(2), name: 'pageview' },
    { appId: appA.id, sessionId: 's1', at: at(2), name: 'pageview' },
    { appId: appA.id, sessionId: 's1', at: at(1000), category: 'form interaction', name: 'submit' },
    { appId: appA.id, sessionId: 's1', at: at(2000), name: 'pageview', validated: false },
    { appId: appA.id, sessionId: 's2', at: at(5_000_000), name: 'pageview' },
    { appId: appA.id, sessionId: 's2', at: at(5_000_001), category: 'form interaction', name: 'submit' },
    // App B, also in session s1.
    { appId: appB.id, sessionId: 's1', at: at(3), name: 'pageview' },
    { appId: appB.id, sessionId: 'b1', at: at(10_000_000), name: 'cta click' },
    { appId: appB.id, sessionId: 'b1', at: at(10_000_000), name: 'pageview' },
  ].map((s) => ({ ...s, receivedAt: microsAfter(T0, 20_000_000), storedAt: microsAfter(T0, 20_000_123) }))
  const ids = await insertEventRows(db, specs)
  events = specs.map((s, i) => ({ ...s, id: ids[i]! })).sort(byTimeDesc((e) => e.at))

  const errorSpecs: EventErrorRowSpec[] = [
    { appId: appA.id, sessionId: 's1', storedAt: at(0), reasons: [{ field: '/data/host', message: 'is required' }] },
    { appId: appA.id, sessionId: 's1', storedAt: at(1), name: 'cta click', reasons: [{ field: '/data/element', message: 'is required' }] },
    {
      appId: appA.id,
      sessionId: null,
      category: null,
      name: null,
      storedAt: at(1),
      raw: { nonsense: true },
      reasons: [
        { field: '/session_id', message: 'is required' },
        { field: '/timestamp', message: 'is required' },
      ],
    },
    {
      appId: appA.id,
      sessionId: 's2',
      storedAt: at(10),
      category: 'form interaction',
      name: 'submit',
      reasons: [{ field: '/data/form', message: 'is required' }],
    },
    { appId: appB.id, sessionId: 'b1', storedAt: at(5), reasons: [{ field: '/timestamp', message: 'is in the future' }] },
    { appId: appB.id, sessionId: 'b1', storedAt: at(6), reasons: [{ field: '/data/path', message: 'is required' }] },
  ]
  const errorIds = await insertEventErrorRows(db, errorSpecs)
  errorRows = errorSpecs.map((s, i) => ({ ...s, id: errorIds[i]! })).sort(byTimeDesc((e) => e.storedAt))
})
after(async () => {
  await api?.close()
})

const ids = (items: Array<{ id: string }>) => items.map((i) => i.id)
const expectedIds = (filter: (e: EventRowSpec & { id: string }) => boolean) => events.filter(filter).map((e) => e.id)

describe('GET /api/events', () => {
  it('answers every event newest first, as { id, app, session_id, category, name, data, timestamp, ... } with microseconds', async () => {
    const res = await get('/api/events', api.tokens.admin)
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as PageBody<EventItem>
    assert.equal(body.next_cursor, null)
    assert.deepEqual(ids(body.items), ids(events))
    const cta = body.items.find((e) => e.name === 'cta click' && e.session_id === 's1')!
    assert.deepEqual(cta, {
      id: cta.id,
      app: appA.name,
      session_id: 's1',
      category: 'page interaction',
      name: 'cta click',
      data: { host: 'h', path: '/', element: 'chat bubble' },
      timestamp: '2021-01-01T09:00:00.000001Z',
      received_at: '2021-01-01T09:00:20.000000Z',
      stored_at: '2021-01-01T09:00:20.000123Z',
      validated: true,
    })
    assert.equal(body.items.find((e) => e.app === appB.name)?.app, appB.name)
    assert.equal(body.items.filter((e) => !e.validated).length, 1)
  })

  it('pages with a keyset cursor that keeps microseconds: one event per page still yields each once, in order', async () => {
    for (const limit of [1, 2, 3, 50]) {
      const { items, pages } = await walk<EventItem>('/api/events', api.tokens.admin, limit)
      assert.deepEqual(ids(items), ids(events), `limit ${limit}`)
      assert.equal(pages, Math.max(1, Math.ceil(events.length / limit)), `limit ${limit}`)
    }
  })

  it('filters by session, category, name, app (by name or id), and combinations', async () => {
    const cases: Array<[string, (e: EventRowSpec) => boolean]> = [
      ['session_id=s1', (e) => e.sessionId === 's1'],
      ['category=form%20interaction', (e) => e.category === 'form interaction'],
      ['name=cta%20click', (e) => e.name === 'cta click'],
      ['category=page%20interaction&name=pageview', (e) => (e.category ?? 'page interaction') === 'page interaction' && e.name === 'pageview'],
      [`app=${appB.name}`, (e) => e.appId === appB.id],
      [`app=${appB.id}`, (e) => e.appId === appB.id],
      [`app=${appA.name}&session_id=s1`, (e) => e.appId === appA.id && e.sessionId === 's1'],
      [`session_id=s1&name=pageview`, (e) => e.sessionId === 's1' && e.name === 'pageview'],
      ['session_id=nobody', () => false],
    ]
    for (const [query, filter] of cases) {
      const { items } = await walk<EventItem>(`/api/events?${query}`, api.tokens.admin, 2)
      assert.deepEqual(ids(items), expectedIds(filter), query)
    }
  })

  it('bounds the timestamp with from (inclusive) and to (exclusive), to the microsecond, in every accepted form', async () => {
    const cases: Array<[string, (e: EventRowSpec) => boolean]> = [
      [`from=${at(2)}&to=${at(1000)}`, (e) => e.at >= at(2) && e.at < at(1000)],
      [`from=${encodeURIComponent('2021-01-01 09:00:00.000001')}`, (e) => e.at >= at(1)],
      [`to=${encodeURIComponent('2021-01-01T10:00:00.000002+01:00')}`, (e) => e.at < at(2)],
      ['from=2021-01-01&to=2021-01-02', () => true],
      ['from=2021-01-02', () => false],
      [`from=${at(5_000_000)}&app=${appA.name}`, (e) => e.at >= at(5_000_000) && e.appId === appA.id],
      [
        `from=${at(0)}&to=${at(3)}&session_id=s1&category=page%20interaction&name=pageview`,
        (e) => e.at < at(3) && e.sessionId === 's1' && e.name === 'pageview',
      ],
    ]
    for (const [query, filter] of cases) {
      const { items } = await walk<EventItem>(`/api/events?${query}`, api.tokens.admin, 3)
      assert.deepEqual(ids(items), expectedIds(filter), query)
    }
  })

  it('answers 400 naming the field for a malformed from or to, a to before from, a bad cursor, limit or unknown filter', async () => {
    const cases: Array<[string, string, string]> = [
      ['from=yesterday', 'validation_failed', 'querystring.from'],
      ['to=2021-02-30', 'validation_failed', 'querystring.to'],
      ['from=2021-01-01T09:00:00', 'validation_failed', 'querystring.from'],
      ['to=2021-01-01T25:00:00Z', 'validation_failed', 'querystring.to'],
      ['from=2021-01-02&to=2021-01-01', 'validation_failed', 'querystring.to'],
      ['cursor=bm9wZQ', 'invalid_cursor', 'querystring.cursor'],
      ['limit=0', 'validation_failed', 'querystring.limit'],
      ['limit=201', 'validation_failed', 'querystring.limit'],
      ['category=', 'validation_failed', 'querystring.category'],
      ['colour=red', 'validation_failed', 'querystring.colour'],
    ]
    for (const [query, code, field] of cases) {
      const res = await get(`/api/events?${query}`, api.tokens.admin)
      assert.equal(res.statusCode, 400, query)
      const error = errorOf(res)
      assert.equal(error.code, code, query)
      assert.match(JSON.stringify(error.details), new RegExp(field.replace('.', '\\.')), query)
    }
  })
})

describe('GET /api/sessions/{session_id}/events', () => {
  it("answers a session's events in timestamp order (ascending), paged, ties broken by id", async () => {
    const expected = events.filter((e) => e.sessionId === 's1').reverse()
    for (const limit of [1, 4, 200]) {
      const { items } = await walk<EventItem>('/api/sessions/s1/events', api.tokens.admin, limit)
      assert.deepEqual(ids(items), ids(expected), `limit ${limit}`)
    }
    const timestamps = (await walk<EventItem>('/api/sessions/s1/events', api.tokens.admin, 50)).items.map((e) => e.timestamp)
    assert.deepEqual(timestamps, [...timestamps].sort())
  })

  it('answers an empty page for an unknown session and 400 for a bad cursor', async () => {
    const res = await get('/api/sessions/nobody/events', api.tokens.admin)
    assert.deepEqual(res.json(), { items: [], next_cursor: null })
    const bad = await get('/api/sessions/s1/events?cursor=xyz', api.tokens.admin)
    assert.equal(bad.statusCode, 400)
    assert.equal(errorOf(bad).code, 'invalid_cursor')
  })
})

describe('GET /api/event-errors', () => {
  it('answers every error newest first by stored_at, with the raw event and every reason', async () => {
    const { items } = await walk<ErrorItem>('/api/event-errors', api.tokens.admin, 50)
    assert.deepEqual(ids(items), ids(errorRows))
    const both = items.find((e) => e.reasons.length === 2)!
    assert.deepEqual(both, {
      id: both.id,
      app: appA.name,
      session_id: null,
      category: null,
      name: null,
      raw: { nonsense: true },
      reasons: [
        { field: '/session_id', message: 'is required' },
        { field: '/timestamp', message: 'is required' },
      ],
      received_at: '2021-01-01T09:00:00.000001Z',
      stored_at: '2021-01-01T09:00:00.000001Z',
    })
  })

  it('pages to the microsecond and filters by app, session, category, name and stored time', async () => {
    assert.deepEqual(ids((await walk<ErrorItem>('/api/event-errors', api.tokens.admin, 1)).items), ids(errorRows))
    const cases: Array<[string, (e: EventErrorRowSpec) => boolean]> = [
      [`app=${appB.name}`, (e) => e.appId === appB.id],
      ['session_id=s1', (e) => e.sessionId === 's1'],
      ['session_id=b1&to=' + at(6), (e) => e.sessionId === 'b1' && e.storedAt < at(6)],
      ['session_id=nobody', () => false],
      ['category=form%20interaction', (e) => e.category === 'form interaction'],
      ['name=cta%20click', (e) => e.name === 'cta click'],
      [`from=${at(1)}&to=${at(6)}`, (e) => e.storedAt >= at(1) && e.storedAt < at(6)],
      [`app=${appA.id}&from=${at(1)}`, (e) => e.appId === appA.id && e.storedAt >= at(1)],
    ]
    for (const [query, filter] of cases) {
      const { items } = await walk<ErrorItem>(`/api/event-errors?${query}`, api.tokens.admin, 1)
      assert.deepEqual(ids(items), errorRows.filter(filter).map((e) => e.id), query)
    }
    const bad = await get('/api/event-errors?from=soon', api.tokens.admin)
    assert.equal(bad.statusCode, 400)
    assert.equal((errorOf(bad).details as Array<{ field: string }>)[0]?.field, 'querystring.from')
  })
})

describe('who sees what', () => {
  const urls = ['/api/events', '/api/sessions/s1/events', '/api/event-errors']

  it('answers 401 without a token or with an unknown one', async () => {
    for (const url of urls) {
      const none = await get(url)
      assert.equal(none.statusCode, 401, url)
      assert.match(String(none.headers['www-authenticate']), /^Bearer/)
      assert.equal((await get(url, 'bourse_app_' + 'x'.repeat(43))).statusCode, 401, url)
    }
  })

  it('answers 403 to a user token', async () => {
    for (const url of urls) {
      const res = await get(url, api.tokens.user1)
      assert.equal(res.statusCode, 403, url)
      assert.equal(errorOf(res).code, 'forbidden')
    }
  })

  it("shows an application token only its own application's events and errors", async () => {
    const own = await walk<EventItem>('/api/events', api.tokens.app, 3)
    assert.deepEqual(ids(own.items), expectedIds((e) => e.appId === appA.id))
    const ownB = await walk<EventItem>('/api/events', appB.token, 3)
    assert.deepEqual(ids(ownB.items), expectedIds((e) => e.appId === appB.id))
    const session = await walk<EventItem>('/api/sessions/s1/events', appB.token, 3)
    assert.deepEqual(ids(session.items), expectedIds((e) => e.appId === appB.id && e.sessionId === 's1'))
    const errorsB = await walk<ErrorItem>('/api/event-errors', appB.token, 3)
    assert.deepEqual(ids(errorsB.items), errorRows.filter((e) => e.appId === appB.id).map((e) => e.id))
    const named = await walk<EventItem>(`/api/events?app=${appA.name}&category=form%20interaction`, api.tokens.app, 3)
    assert.deepEqual(ids(named.items), expectedIds((e) => e.appId === appA.id && e.category === 'form interaction'))
  })

  it('answers 403 naming the field when an application token names another application, or one that does not exist', async () => {
    for (const url of [
      `/api/events?app=${appB.name}`,
      `/api/events?app=${appB.id}`,
      '/api/events?app=no-such-app',
      `/api/event-errors?app=${appB.name}`,
    ]) {
      const res = await get(url, api.tokens.app)
      assert.equal(res.statusCode, 403, url)
      assert.deepEqual(errorOf(res).details, { field: 'querystring.app' }, url)
    }
  })

  it('gives an admin naming an unknown application an empty page', async () => {
    assert.deepEqual((await get('/api/events?app=no-such-app', api.tokens.admin)).json(), { items: [], next_cursor: null })
    assert.deepEqual((await get('/api/event-errors?app=no-such-app', api.tokens.admin)).json(), { items: [], next_cursor: null })
  })
})

describe('OpenAPI', () => {
  it('documents the three routes with bearer security, their filters and examples', async () => {
    const res = await get('/docs/json')
    assert.equal(res.statusCode, 200)
    const doc = res.json() as { paths: Record<string, { get?: { security?: unknown; parameters?: Array<{ name: string }>; responses: Json } }> }
    for (const path of ['/api/events', '/api/sessions/{session_id}/events', '/api/event-errors']) {
      const op = doc.paths[path]?.get
      assert.ok(op, path)
      assert.deepEqual(op.security, [{ bearer: [] }], path)
      assert.ok(op.responses['200'], path)
    }
    const names = doc.paths['/api/events']!.get!.parameters!.map((p) => p.name).sort()
    assert.deepEqual(names, ['app', 'category', 'cursor', 'from', 'limit', 'name', 'session_id', 'to'])
    const errorParams = doc.paths['/api/event-errors']!.get!.parameters!.map((p) => p.name).sort()
    assert.deepEqual(errorParams, ['app', 'category', 'cursor', 'from', 'limit', 'name', 'session_id', 'to'])
    assert.match(JSON.stringify(doc.paths['/api/events']), /2021-01-01T09:15:27.243860Z/)
    assert.match(JSON.stringify(doc.paths['/api/event-errors']), /\/data\/host/)
    assert.equal(doc.paths['/admin/events'], undefined)
  })
})
