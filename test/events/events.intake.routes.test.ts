/**
 * `POST /api/events` over HTTP (`app.inject`) on the real Redis, Kafka and PostgreSQL:
 * 202 with ids only for events really in the topic (one version 2 message per request, the
 * body's own text inside), each 400 naming the field, 413 naming the event, and who may
 * send (401, 403).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { createApp, revokeApp } from '../../src/events/apps.repository.ts'
import { type AcceptedEvent, decodeEventMessage, type EventMessageV2 } from '../../src/events/event-message.ts'
import { INTAKE_BODY_LIMIT_BYTES, MAX_DATA_DEPTH } from '../../src/events/events.intake.routes.ts'
import { MAX_EVENT_BYTES } from '../../src/events/events.schemas.ts'
import { type EventsApi, openEventsApi, sampleEvent } from '../helpers/events.ts'
import { endOffsets, readTopic, type TopicRecord } from '../helpers/topic-reader.ts'

let api: EventsApi
before(async () => {
  api = await openEventsApi()
})
after(async () => {
  await api.close()
})

type ErrorBody = { error: { code: string; message: string; details?: unknown } }
const errorOf = (res: { json: () => unknown }) => (res.json() as ErrorBody).error
const accepted = (res: { json: () => unknown }) => res.json() as { accepted: number; ids: string[] }

/** POSTs a raw body to the intake with a token (the app's by default). */
const send = (payload: string, token: string | null = api.tokens.app, contentType = 'application/json') =>
  api.app.inject({
    method: 'POST',
    url: '/api/events',
    headers: { ...(token !== null && api.auth(token)), 'content-type': contentType },
    payload,
  })

/** The topic's events with these ids, by id, with the record that carried each. */
async function messagesWithIds(ids: Iterable<string>): Promise<Map<string, { record: TopicRecord; message: AcceptedEvent }>> {
  const wanted = new Set(ids)
  const found = new Map<string, { record: TopicRecord; message: AcceptedEvent }>()
  for (const record of (await readTopic(api.topic)).flat()) {
    for (const message of decodeEventMessage(record.value!)) {
      if (wanted.has(message.id)) found.set(message.id, { record, message })
    }
  }
  return found
}

const sum = (offsets: bigint[]) => offsets.reduce((a, b) => a + b, 0n)

/** An object nesting `depth` levels (`{}` is 1, `{"a":{}}` is 2). */
const nested = (depth: number): Record<string, unknown> => (depth <= 1 ? {} : { a: nested(depth - 1) })

describe('POST /api/events accepts', () => {
  it('one event: 202 with its new id, once a version 2 message holding it as sent is in Kafka', async () => {
    const event = sampleEvent()
    // Spacing, key order and escapes as the application wrote them.
    const payload = ` {"timestamp": "${event.timestamp}", "session_id":"${event.session_id}", "category":"page interaction", "name":"page\\u0076iew", "data":{"path":"/","host":"www.consumeraffairs.com"}}\n`
    const before = Date.now()
    const res = await send(payload)
    assert.equal(res.statusCode, 202, res.body)
    const body = accepted(res)
    assert.equal(body.accepted, 1)
    assert.equal(body.ids.length, 1)
    assert.match(body.ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7')
    const idTime = parseInt(body.ids[0]!.slice(0, 8) + body.ids[0]!.slice(9, 13), 16)
    assert.ok(idTime >= before && idTime <= Date.now(), 'the id holds the time it was accepted')
    const found = await messagesWithIds(body.ids)
    const { record, message } = found.get(body.ids[0]!)!
    assert.equal(record.key, undefined, 'no key: the producer spreads messages over the partitions')
    assert.ok(record.value!.endsWith(`"events":[${payload}]}`), record.value!)
    const value = JSON.parse(record.value!) as EventMessageV2
    assert.deepEqual({ ...value, received_at: undefined }, { v: 2, app_id: api.appId, received_at: undefined, ids: body.ids, events: [event] })
    assert.deepEqual(message, { id: body.ids[0], app_id: api.appId, received_at: value.received_at, event })
    const receivedAt = Date.parse(message.received_at)
    assert.ok(receivedAt >= before - 1000 && receivedAt <= Date.now() + 1000, message.received_at)
  })

  it('500 events: 202 with 500 ids in request order, all in one message in that order', async () => {
    const sessions = Array.from({ length: 50 }, () => randomUUID())
    const events = Array.from({ length: 500 }, (_, i) => sampleEvent(sessions[i % 50], { data: { host: 'h', path: '/', n: i } }))
    const payload = JSON.stringify(events)
    const res = await send(payload)
    assert.equal(res.statusCode, 202, res.body)
    const body = accepted(res)
    assert.equal(body.accepted, 500)
    assert.equal(new Set(body.ids).size, 500)
    const found = await messagesWithIds(body.ids)
    assert.equal(found.size, 500, 'every accepted event is in the topic')
    body.ids.forEach((id, i) => assert.deepEqual(found.get(id)!.message.event, events[i]))
    const records = new Set([...found.values()].map((f) => f.record))
    assert.equal(records.size, 1, 'one message')
    const [record] = records
    assert.deepEqual((JSON.parse(record!.value!) as EventMessageV2).ids, body.ids)
    assert.ok(record!.value!.endsWith(`"events":${payload}}`), 'the body as sent')
  })

  it('500 events of 32 KiB each (16 MiB, over the API-wide body limit): 202, all in Kafka in messages of at most 768 KiB', async () => {
    const shape = JSON.stringify(sampleEvent(randomUUID(), { data: { host: 'h', path: '/', fill: '' } }))
    const fill = 'x'.repeat(MAX_EVENT_BYTES - Buffer.byteLength(shape))
    const events = Array.from({ length: 500 }, () => sampleEvent(randomUUID(), { data: { host: 'h', path: '/', fill } }))
    assert.equal(Buffer.byteLength(JSON.stringify(events[0])), MAX_EVENT_BYTES)
    const payload = JSON.stringify(events)
    assert.ok(payload.length > api.config.BODY_LIMIT_BYTES)
    const res = await send(payload)
    assert.equal(res.statusCode, 202, res.body.slice(0, 500))
    const { ids } = accepted(res)
    const found = await messagesWithIds(ids)
    assert.equal(found.size, 500)
    ids.forEach((id, i) => assert.deepEqual(found.get(id)!.message.event, events[i]))
    const records = new Set([...found.values()].map((f) => f.record))
    assert.ok(records.size >= 22, `${records.size} messages`)
    for (const record of records) assert.ok(Buffer.byteLength(record.value!) <= 768 * 1024, `${Buffer.byteLength(record.value!)} bytes`)
  })

  it('a body starting with a byte order mark, stored without it', async () => {
    const event = sampleEvent()
    const res = await send(`\ufeff${JSON.stringify([event])}`)
    assert.equal(res.statusCode, 202, res.body)
    const { ids } = accepted(res)
    assert.deepEqual((await messagesWithIds(ids)).get(ids[0]!)?.message.event, event)
  })

  it('carries text beyond ASCII byte for byte', async () => {
    const event = sampleEvent(undefined, { data: { host: 'bücher.example', path: '/ðŸ/日本語/😀', note: 'a\u0001b "q" \\' } })
    const res = await send(JSON.stringify([event]))
    assert.equal(res.statusCode, 202, res.body)
    const { ids } = accepted(res)
    assert.deepEqual((await messagesWithIds(ids)).get(ids[0]!)?.message.event, event)
  })

  it("keeps an event's own id (as key of the worker's dedup) and mixes it with new ones", async () => {
    const own = randomUUID()
    const res = await send(JSON.stringify([sampleEvent(undefined, { id: own }), sampleEvent()]))
    assert.equal(res.statusCode, 202, res.body)
    const { ids } = accepted(res)
    assert.equal(ids[0], own)
    assert.notEqual(ids[1], own)
    const found = await messagesWithIds(ids)
    assert.equal(found.get(own)?.message.event.id, own)
    assert.equal(found.size, 2)
  })

  it('checks nothing beyond the shape: unknown types, odd timestamps and data go to the worker', async () => {
    const event = sampleEvent(undefined, { category: 'unknown', name: 'thing', timestamp: 'not a date', data: { any: [1, { deep: null }] } })
    const res = await send(JSON.stringify(event))
    assert.equal(res.statusCode, 202, res.body)
    const deep = await send(JSON.stringify(sampleEvent(undefined, { data: nested(MAX_DATA_DEPTH) })))
    assert.equal(deep.statusCode, 202, deep.body)
  })
})

describe('POST /api/events refuses', () => {
  it('each syntax error with 400 naming the field, and writes nothing', async () => {
    const valid = sampleEvent()
    const { session_id: _, ...noSession } = valid
    const cases: Array<[string, string, RegExp]> = [
      ['missing session_id', JSON.stringify(noSession), /body\.session_id/],
      ['data not an object', JSON.stringify({ ...valid, data: 'x' }), /body\.data/],
      ['data an array', JSON.stringify({ ...valid, data: [1] }), /body\.data/],
      ['timestamp not a string', JSON.stringify({ ...valid, timestamp: 1609492527 }), /body\.timestamp/],
      ['extra field', JSON.stringify({ ...valid, extra: true }), /body\.extra/],
      ['empty session_id', JSON.stringify({ ...valid, session_id: '' }), /body\.session_id/],
      ['id not a UUID', JSON.stringify({ ...valid, id: 'abc' }), /body\.id/],
      // Format 'uuid' alone would take it; the worker's message contract and PostgreSQL would not.
      ['id as a uuid URN', JSON.stringify({ ...valid, id: `urn:uuid:${randomUUID()}` }), /body\.id/],
      ['bad event in an array', JSON.stringify([valid, valid, { ...valid, name: 5 }]), /body\[2\]\.name/],
      ['empty array', '[]', /"body"/],
      ['501 events', JSON.stringify(Array.from({ length: 501 }, () => valid)), /"body"/],
      ['JSON null', 'null', /"body"/],
      ['a string', '"pageview"', /"body"/],
      ['a number', '42', /"body"/],
      ['an array of strings', '["a"]', /body\[0\]/],
      ['data nested too deep', JSON.stringify([valid, { ...valid, data: nested(MAX_DATA_DEPTH + 1) }]), /body\[1\]\.data.*deeper than 64/],
      // 20 KB of brackets: under the size limit, but deeper than JSON.stringify's stack allows.
      ['data nested 10,000 levels', `{"session_id":"s","category":"c","name":"n","timestamp":"t","data":{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`, /body\.data/],
    ]
    const offsets = sum(await endOffsets(api.topic))
    for (const [name, payload, field] of cases) {
      const res = await send(payload)
      assert.equal(res.statusCode, 400, `${name}: ${res.body.slice(0, 300)}`)
      const error = errorOf(res)
      assert.equal(error.code, 'validation_failed', name)
      assert.match(JSON.stringify(error.details), field, `${name}: ${JSON.stringify(error.details)}`)
      // Only the branch of the union the body is meant for is reported.
      assert.doesNotMatch(JSON.stringify(error.details), /anyOf|must be array/, name)
    }
    for (const payload of ['{"session_id": ', 'not json', '']) {
      const res = await send(payload)
      assert.equal(res.statusCode, 400, payload)
      assert.equal(errorOf(res).code, 'malformed_json')
    }
    // Prototype keys, also spelled with escapes, as Fastify's own parser refuses them.
    for (const key of ['"__proto__"', '"\\u005f_proto__"', '"constructor":{"prototype"']) {
      const payload = JSON.stringify({ ...valid, data: { x: 'KEY' } }).replace('"x":"KEY"', `${key}:{"polluted":true}${key.includes('constructor') ? '}' : ''}`)
      const res = await send(payload)
      assert.equal(res.statusCode, 400, `${payload}: ${res.body}`)
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
    }
    assert.equal(sum(await endOffsets(api.topic)), offsets, 'nothing reached the topic')
  })

  it('an event over 32 KiB as JSON with 413 naming its index; the others are not sent either', async () => {
    const offsets = sum(await endOffsets(api.topic))
    const shape = JSON.stringify(sampleEvent(undefined, { data: { fill: '' } }))
    const big = sampleEvent(undefined, { data: { fill: 'x'.repeat(MAX_EVENT_BYTES - Buffer.byteLength(shape) + 1) } })
    assert.equal(Buffer.byteLength(JSON.stringify(big)), MAX_EVENT_BYTES + 1)

    const alone = await send(JSON.stringify(big))
    assert.equal(alone.statusCode, 413, alone.body.slice(0, 300))
    assert.equal(errorOf(alone).code, 'event_too_large')
    assert.deepEqual(errorOf(alone).details, { limitBytes: MAX_EVENT_BYTES, events: [{ index: 0, field: 'body', bytes: MAX_EVENT_BYTES + 1 }] })

    const inBatch = await send(JSON.stringify([sampleEvent(), sampleEvent(), big]))
    assert.equal(inBatch.statusCode, 413)
    assert.match(errorOf(inBatch).message, /event 2 \(body\[2\]\)/)
    assert.deepEqual((errorOf(inBatch).details as { events: unknown[] }).events, [{ index: 2, field: 'body[2]', bytes: MAX_EVENT_BYTES + 1 }])

    // Under 32 KiB as sent, but over it as JSON: numbers written with an exponent are longer serialized.
    const exponents = `{"session_id":"s","category":"c","name":"n","timestamp":"t","data":{"n":[${Array.from({ length: 3000 }, () => '1e20').join(',')}]}}`
    assert.ok(Buffer.byteLength(exponents) < MAX_EVENT_BYTES)
    const expanded = await send(exponents)
    assert.equal(expanded.statusCode, 413, expanded.body.slice(0, 300))
    assert.equal(errorOf(expanded).code, 'event_too_large')
    assert.equal(sum(await endOffsets(api.topic)), offsets, 'nothing of a refused request reached the topic')
  })

  it('a body over the route limit with 413 naming the limit, without reading it', async () => {
    const res = await api.app.inject({
      method: 'POST',
      url: '/api/events',
      headers: { ...api.auth(api.tokens.app), 'content-type': 'application/json' },
      payload: `[${'1,'.repeat(INTAKE_BODY_LIMIT_BYTES / 2)}1]`,
    })
    assert.equal(res.statusCode, 413)
    assert.equal(errorOf(res).code, 'payload_too_large')
    assert.deepEqual(errorOf(res).details, { limitBytes: INTAKE_BODY_LIMIT_BYTES })
  })

  it('a body that is not JSON with 415', async () => {
    const res = await send('session_id=1', api.tokens.app, 'text/plain')
    assert.equal(res.statusCode, 415)
  })

  it('no token or an unknown one with 401, user and admin tokens with 403, before reading the body', async () => {
    const payload = JSON.stringify(sampleEvent())
    const none = await send(payload, null)
    assert.equal(none.statusCode, 401)
    assert.equal(errorOf(none).code, 'unauthorized')
    assert.match(String(none.headers['www-authenticate']), /^Bearer/)
    const unknown = await send(payload, `bourse_app_${'A'.repeat(43)}`)
    assert.equal(unknown.statusCode, 401)
    assert.match(String(unknown.headers['www-authenticate']), /invalid_token/)
    for (const token of [api.tokens.user1, api.tokens.admin]) {
      const res = await send(payload, token)
      assert.equal(res.statusCode, 403)
      assert.equal(errorOf(res).code, 'forbidden')
      assert.match(errorOf(res).message, /application token/)
      // Refused before the body is parsed: a malformed body gets the same 403.
      assert.equal((await send('{nope', token)).statusCode, 403)
    }
  })

  it('a revoked application token with 401', async () => {
    const other = await createApp(api.testDb.db, `revoked-${randomUUID().slice(0, 8)}`)
    const payload = JSON.stringify(sampleEvent())
    assert.equal((await send(payload, other.token)).statusCode, 202)
    assert.equal((await revokeApp(api.testDb.db, other.name)).status, 'revoked')
    const res = await send(payload, other.token)
    assert.equal(res.statusCode, 401)
    assert.equal(errorOf(res).code, 'unauthorized')
  })
})

it('documents the route in OpenAPI: bearer security, body, 202 with an example', async () => {
  const res = await api.app.inject({ method: 'GET', url: '/docs/json' })
  const operation = (res.json() as { paths: Record<string, { post?: Record<string, unknown> }> }).paths['/api/events']?.post
  assert.ok(operation)
  assert.deepEqual(operation.security, [{ bearer: [] }])
  const text = JSON.stringify(operation)
  for (const part of ['requestBody', '"202"', '"503"', '"413"', 'session_id', 'examples']) assert.ok(text.includes(part), part)
})
