/**
 * Fuzzing `POST /api/events` with more than 10,000 malformed or hostile requests from a
 * seeded generator (BOURSE_FUZZ_SEED replays a run): bad JSON, deep nesting, huge
 * strings, wrong types, prototype-pollution keys, bad batches, wrong content types and
 * tokens. Every answer must be a 4xx, the process must survive with `Object.prototype`
 * untouched, the API must still take a valid event, and nothing of the hostile requests
 * may reach the topic.
 *
 * Each generated request is invalid by construction (a syntax error, or at least one
 * definite violation of the event schema, or a caller that may not send), so a 202 is a
 * bug in the intake, never noise.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import { createApp, revokeApp } from '../../src/events/apps.repository.ts'
import { MAX_DATA_DEPTH } from '../../src/events/events.intake.routes.ts'
import { MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST } from '../../src/events/events.schemas.ts'
import { type EventsApi, openEventsApi, sampleEvent } from '../helpers/events.ts'
import { endOffsets } from '../helpers/topic-reader.ts'

const REQUESTS = 10_500
const SEED = Number(process.env.BOURSE_FUZZ_SEED ?? 0x5eed_e7e)

let api: EventsApi
let revokedToken: string
before(async () => {
  // A cached token check keeps 10,000 requests fast; revocation is not what is tested here.
  api = await openEventsApi({ env: { AUTH_CACHE_MS: '60000' } })
  const revoked = await createApp(api.testDb.db, 'revoked-app')
  await revokeApp(api.testDb.db, revoked.id)
  revokedToken = revoked.token
})
after(async () => {
  await api.close()
})

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function createRandom(seed: number) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  return {
    next,
    int,
    between: (min: number, max: number) => min + int(max - min + 1),
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    chance: (p: number) => next() < p,
  }
}
const random = createRandom(SEED)

/** One request to send and what it is, for the failure message. */
interface FuzzRequest {
  kind: string
  payload: string | Buffer
  contentType?: string | undefined
  /** `app` (default), or a token that may not send. */
  token?: 'app' | 'none' | 'junk' | 'revoked' | 'user' | 'admin'
}

// Raw JSON fragments spliced into a rendered body: what JSON.stringify cannot write
// (nesting deeper than its stack, numbers it would round, escaped keys).
let fragments: string[] = []
const raw = (text: string) => {
  fragments.push(text)
  return `\u0001RAW${fragments.length - 1}\u0001`
}
const render = (value: unknown) => JSON.stringify(value).replace(/"\\u0001RAW(\d+)\\u0001"/g, (_, i: string) => fragments[Number(i)]!)

/** An object without a prototype: `__proto__` and `constructor` become plain own keys, rendered as such. */
const bare = (entries: Record<string, unknown> = {}): Record<string, unknown> => Object.assign(Object.create(null) as object, entries)

const strangeStrings = ['\u0000', '\ud800', '\udfff', '😀', '\u202e', '\\', '"', '</script>', "'; drop table events; --", '${x}', '%s%n', '\r\n', ' ']
const strange = () => random.pick(strangeStrings).repeat(random.between(1, 8))
const stringFields = ['session_id', 'category', 'name', 'timestamp'] as const
const maxLengths = { session_id: 128, category: 100, name: 100, timestamp: 64 } as const
const pollutingKeys = ['prototype', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', '__lookupSetter__', 'isPrototypeOf']

/** Nests `depth` levels of arrays and objects, as JSON text (no recursion). */
function deepText(depth: number): string {
  const opens: string[] = []
  for (let i = 0; i < depth; i++) opens.push(random.chance(0.5) ? '[' : '{"k":')
  const closes = opens.map((open) => (open === '[' ? ']' : '}')).reverse()
  return `${opens.join('')}${random.pick(['1', '"x"', 'null', '{}', '[]'])}${closes.join('')}`
}

/** A valid event, sometimes decorated with odd but legal content (which alone would be accepted). */
function validEvent(): Record<string, unknown> {
  const event = bare(sampleEvent(randomUUID(), { data: bare({ host: 'h', path: '/' }) }))
  if (random.chance(0.3)) event.id = randomUUID()
  if (random.chance(0.3)) event[random.pick(stringFields)] = `x${strange()}`
  if (random.chance(0.3)) (event.data as Record<string, unknown>)[random.pick(pollutingKeys)] = random.pick(['x', 1, null, [], {}])
  if (random.chance(0.1)) (event.data as Record<string, unknown>).deep = raw(deepText(random.between(1, MAX_DATA_DEPTH - 3)))
  return event
}

/** Values of the wrong type for a string field, for `data` (an object) and for `id` (a UUID). */
const wrongForString = () => random.pick<unknown>([0, -1.5, true, false, null, [], ['x'], bare(), bare({ a: 1 }), raw('1e999'), raw('-0'), raw('123456789012345678901234567890')])
const wrongForData = () => random.pick<unknown>(['x', '', 0, 1.5, true, null, [], [1, 2], [bare()], raw('1e400')])
const wrongForId = () =>
  random.pick<unknown>([1, true, null, bare(), [], '', 'abc', 'g'.repeat(36), `urn:uuid:${randomUUID()}`, `{${randomUUID()}}`, ` ${randomUUID()}`, randomUUID().replaceAll('-', ''), `${randomUUID()}0`])

/** Makes an event definitely invalid, in one of many ways; says which. */
function violate(event: Record<string, unknown>): string {
  const way = random.int(10)
  switch (way) {
    case 0:
      delete event[random.pick([...stringFields, 'data'])]
      return 'missing field'
    case 1: {
      const field = random.pick([...stringFields, 'data', 'id'])
      event[field] = field === 'data' ? wrongForData() : field === 'id' ? wrongForId() : wrongForString()
      return `wrong type of ${field}`
    }
    case 2:
      event[random.pick(['extra', '', 'Session_id', 'session_id ', 'ID', 'data2', ...pollutingKeys])] = random.pick<unknown>(['x', 1, null, bare(), []])
      return 'extra field'
    case 3: {
      const field = random.pick(stringFields)
      // Now and then a megabyte or two: huge strings must cost a 400, nothing more.
      const length = random.chance(0.01) ? random.between(1_000_000, 2_000_000) : maxLengths[field] + random.between(1, 20_000)
      event[field] = random.pick(['a', 'é', '😀', '\u0000']).repeat(length)
      return `${field} too long`
    }
    case 4:
      event[random.pick(stringFields)] = ''
      return 'empty string'
    case 5:
      event.data = bare({ nest: raw(deepText(random.chance(0.1) ? random.between(10_000, 100_000) : random.between(MAX_DATA_DEPTH, 2_000))) })
      return 'data nested too deep'
    case 6:
      ;(event.data as Record<string, unknown>).fill = 'x'.repeat(random.between(MAX_EVENT_BYTES, 4 * MAX_EVENT_BYTES))
      return 'event over 32 KiB'
    case 7:
      // Refused by the JSON parser wherever it appears. (On objects without a prototype
      // these are plain own keys, which JSON.stringify writes out.)
      Reflect.set(random.chance(0.5) ? event : (event.data as object), '__proto__', bare({ polluted: true, isAdmin: true }))
      return '__proto__ key'
    case 8:
      Reflect.set(random.chance(0.5) ? event : (event.data as object), 'constructor', bare({ prototype: bare({ polluted: true }) }))
      return 'constructor.prototype key'
    default:
      event.data = bare({ ['__proto__']: bare({ polluted: true }), constructor: bare({ prototype: bare({ polluted: true }) }) })
      return 'both pollution keys in data'
  }
}

/** An invalid event as JSON text; escaped `__proto__` keys now and then. */
function invalidEventText(): { kind: string; text: string } {
  const event = validEvent()
  const kind = violate(event)
  let text = render(event)
  if (kind.includes('__proto__') && random.chance(0.3)) text = text.replaceAll('"__proto__":', '"\\u005f_proto\\u005F_":')
  return { kind, text }
}

const syntaxErrors = [
  '{', '}', '[', ']', '{]', '[}', '{"session_id"}', '{"session_id":}', '{"a":1,}', '[1,]', '[,1]', "{'session_id':'x'}", '{session_id:"x"}',
  '{"a":NaN}', '{"a":Infinity}', '{"a":-Infinity}', '{"a":undefined}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":0x10}', '{"a":"\\x41"}',
  '{"a":"\\u12"}', '{"a":"tab\there"}', '{"a":"line\nbreak"}', '{"a":1}/* comment */', '// comment\n{}', '{"a":1} {"a":2}', '[]]', '{}}',
  'true false', 'nul', 'tru', '"unterminated', '\ufeff{}', '{"a"::1}', '{"a":1 "b":2}', '{,}', '[1 2]', '{"a":[}', 'undefined', 'NaN', '-',
]

/** One hostile request. */
function nextRequest(): FuzzRequest {
  const category = random.int(100)
  // Bodies the JSON parser refuses.
  if (category < 10) {
    const body = random.chance(0.5) ? render(validEvent()) : render([validEvent(), validEvent()])
    return { kind: 'truncated JSON', payload: body.slice(0, random.int(body.length)) }
  }
  if (category < 15) {
    return { kind: 'JSON and trailing junk', payload: render(validEvent()) + random.pick(['x', '}', ']', ',', '{}', '0', '"', '\u0000', 'null']) }
  }
  if (category < 22) {
    const template = random.pick(syntaxErrors)
    return { kind: `syntax error ${JSON.stringify(template)}`, payload: random.chance(0.5) ? template : `[${render(validEvent())},${template}]` }
  }
  if (category < 27) {
    const bytes = Buffer.alloc(random.between(1, 4096))
    for (let i = 0; i < bytes.length; i++) bytes[i] = random.int(256)
    return { kind: 'random bytes', payload: bytes }
  }
  if (category < 30) {
    const alphabet = '{}[]":,0123456789.eE+-truefalsnl \\u\n\t'
    let text = ''
    for (let i = random.between(1, 512); i > 0; i--) text += alphabet[random.int(alphabet.length)]
    return { kind: 'random JSON-ish characters', payload: text }
  }
  // Deep nesting at the top: the body itself, or an array of it.
  if (category < 35) {
    const depth = random.chance(0.2) ? random.between(100_000, 300_000) : random.between(2, 5_000)
    const text = random.chance(0.3) ? '['.repeat(depth) : deepText(depth)
    return { kind: `top-level nesting ${depth}`, payload: random.chance(0.5) ? text : `[${render(validEvent())},${text}]` }
  }
  // Well-formed JSON that is not an event or a batch of them.
  if (category < 40) {
    const payload = random.pick(['null', 'true', 'false', '0', '-1', '1e999', '""', '"pageview"', '[]', '[null]', '[1]', '["x"]', '[[]]', '[{}]', '{}', '[[{}]]'])
    return { kind: `not an event: ${payload}`, payload: random.chance(0.3) ? payload.replace(/\[\]$/, `[${render([validEvent()])}]`) : payload }
  }
  if (category < 42) {
    const count = random.between(MAX_EVENTS_PER_REQUEST + 1, MAX_EVENTS_PER_REQUEST + 100)
    return { kind: `${count} events`, payload: render(Array.from({ length: count }, validEvent)) }
  }
  // A valid-looking body from a caller that may not send, or in the wrong media type.
  if (category < 47) {
    const token = random.pick(['none', 'junk', 'revoked', 'user', 'admin'] as const)
    return { kind: `token ${token}`, payload: render(random.chance(0.5) ? validEvent() : [validEvent()]), token }
  }
  if (category < 50) {
    const contentType = random.pick([undefined, 'text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'json', 'text/json', 'application/octet-stream'])
    return { kind: `content type ${String(contentType)}`, payload: render(validEvent()), contentType }
  }
  // Events with at least one definite violation: alone or somewhere in a batch.
  if (category < 75) {
    const { kind, text } = invalidEventText()
    return { kind, payload: text }
  }
  const { kind, text } = invalidEventText()
  const size = random.between(1, 20)
  const at = random.int(size)
  const items = Array.from({ length: size }, (_, i) => (i === at ? text : render(validEvent())))
  return { kind: `${kind} at [${at}] of ${size}`, payload: `[${items.join(',')}]` }
}

const sum = (offsets: bigint[]) => offsets.reduce((a, b) => a + b, 0n)

test(`${REQUESTS} malformed or hostile requests (seed ${SEED}): only 4xx, no crash, no pollution, nothing stored`, async (t) => {
  const prototypeKeys = Reflect.ownKeys(Object.prototype)
  const offsetsBefore = sum(await endOffsets(api.topic))
  const tokens = { app: api.tokens.app, none: undefined, junk: `bourse_app_${'x'.repeat(43)}`, revoked: revokedToken, user: api.tokens.user1, admin: api.tokens.admin }
  const statuses = new Map<number, number>()
  const kinds = new Map<string, number>()
  const failures: string[] = []
  const started = performance.now()

  for (let i = 0; i < REQUESTS; i++) {
    fragments = []
    const request = nextRequest()
    const token = tokens[request.token ?? 'app']
    const headers: Record<string, string> = {}
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    const contentType = 'contentType' in request ? request.contentType : 'application/json'
    if (contentType !== undefined) headers['content-type'] = contentType
    const res = await api.app.inject({ method: 'POST', url: '/api/events', headers, payload: request.payload })
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
    const kind = request.kind.replace(/ at \[\d+\] of \d+|: .*| ".*"/g, '').replace(/\d+/g, 'N')
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    if (res.statusCode < 400 || res.statusCode >= 500) {
      failures.push(`#${i} ${request.kind}: ${res.statusCode} ${res.body.slice(0, 200)} <- ${String(request.payload).slice(0, 200)}`)
    } else if (!/^application\/json/.test(String(res.headers['content-type'])) || typeof (res.json() as { error?: { code?: unknown } }).error?.code !== 'string') {
      failures.push(`#${i} ${request.kind}: ${res.statusCode} without the error shape: ${res.body.slice(0, 200)}`)
    }
  }
  const elapsedMs = performance.now() - started
  t.diagnostic(`seed ${SEED}: ${REQUESTS} requests in ${Math.round(elapsedMs)} ms; statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.diagnostic(`kinds ${JSON.stringify(Object.fromEntries([...kinds].sort((a, b) => b[1] - a[1])))}`)

  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} requests were not answered with a 4xx error (replay with BOURSE_FUZZ_SEED=${SEED})`)
  assert.deepEqual(Reflect.ownKeys(Object.prototype), prototypeKeys, 'Object.prototype gained no key')
  for (const key of ['polluted', 'isAdmin']) {
    assert.equal(key in {}, false, `Object.prototype.${key}`)
    assert.equal(key in [], false, `Array.prototype.${key}`)
  }
  assert.equal(sum(await endOffsets(api.topic)), offsetsBefore, 'nothing of the hostile requests reached the topic')

  const valid = await api.app.inject({
    method: 'POST',
    url: '/api/events',
    headers: { ...api.auth(api.tokens.app), 'content-type': 'application/json' },
    payload: JSON.stringify(sampleEvent()),
  })
  assert.equal(valid.statusCode, 202, valid.body)
  assert.equal(sum(await endOffsets(api.topic)), offsetsBefore + 1n, 'the valid event, and only it, is in the topic')
})
