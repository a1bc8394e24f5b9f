/**
 * Fuzzing the whole API from its OpenAPI document (`app.swagger()`, what
 * `scripts/openapi.ts` prints): more than 10,000 requests generated with fast-check from
 * each operation's parameters and body schema, every operation in turn, each parameter
 * valid, absent or hostile (NUL, unpaired surrogates, huge and odd numbers, deep nesting,
 * wrong types, malformed percent-encoding), with user, admin, application, unknown and
 * malformed tokens, through `app.inject` of the real API on the real Redis, Kafka and
 * PostgreSQL.
 *
 * Asserted: no answer is a 5xx (nor missing); and refused requests store nothing. After
 * each batch, every table's row count and both topics' end offsets moved exactly by what
 * the batch's accepted requests account for (a 202 order: one row and one message; a 202
 * event request: one message; an event type: one row per 201, minus one per 204; an
 * alert: one row per 201, minus one per 204; a BTC order: one row per 201; a report: one
 * row per 201).
 *
 * Seeded: the seed is printed, and BOURSE_FUZZ_SEED=<seed> replays a run
 * (BOURSE_FUZZ_REQUESTS changes the count).
 */
import assert from 'node:assert/strict'
import { text } from 'node:stream/consumers'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { sql } from 'kysely'
import { createUnsubscribeSigner } from '../../src/alerts/index.ts'
import { createApp } from '../../src/events/apps.repository.ts'
import type { StringConsumer } from '../../src/platform/kafka/clients.ts'
import { writeQuote } from '../helpers/btc-api.ts'
import { createTestTopic, uniqueName } from '../helpers/infra.ts'
import { createReaderConsumer, endOffsets } from '../helpers/topic-reader.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const SEED = Number(process.env.BOURSE_FUZZ_SEED ?? Date.now() % 2 ** 31)
const REQUESTS = Number(process.env.BOURSE_FUZZ_REQUESTS ?? 10_000)
const BATCH = 250

// A JSON Schema as the OpenAPI document holds it.
type Schema = Record<string, unknown> & {
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  anyOf?: Schema[]
  oneOf?: Schema[]
  examples?: unknown[]
}
interface Parameter {
  in: 'query' | 'path' | 'header'
  name: string
  required?: boolean
  schema: Schema
}
interface Operation {
  method: string
  path: string
  parameters: Parameter[]
  body?: Schema
}

/** JSON text spliced as it is into a body: what JSON.stringify cannot write (1e400, nesting deeper than its stack). */
class Raw {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
}

/** JSON text of a generated value, {@link Raw} fragments spliced in. Generated values nest a few levels only. */
function serialize(value: unknown): string {
  if (value instanceof Raw) return value.text
  if (Array.isArray(value)) return `[${value.map(serialize).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

const hostileStrings = [
  '\u0000', 'a\u0000b', '\ud800', 'x\udfff', '\udc00\ud800', '😀', '\u202e', '\ufeff', '\uffff', '\u0085', '\r\n', ' ', '',
  "' or 1=1 --", '"; drop table orders; --', '../../../etc/passwd', '%00', '%', '%zz', '\\', '"', '<script>', '${jndi:x}',
  '__proto__', 'constructor', 'null', 'undefined', 'NaN', 'Infinity', '-1', '0', '1e400', '9'.repeat(400),
  'a'.repeat(10_000), 'é'.repeat(3_000), '😀'.repeat(2_000), 'msg_' + 'f'.repeat(32), '00000000-0000-0000-0000-000000000000',
  '9999-12-31T23:59:59Z', '0000-01-01', '2021-02-30', '-infinity', 'epoch', '2021-01-01 09:15:27.2438601',
  'http://[64:ff9b::7f00:1]/', 'http://127.0.0.1:1/', 'http://0/', 'https://[::ffff:0:a9fe:a9fe]/x', 'javascript:alert(1)',
]
const hostileNumbers = ['1e400', '-1e400', '1e308', '-0', '9007199254740993', '1' + '0'.repeat(400), '0.1e-400', '1.5', '-1', '0', '4294967296', '1e9', '1000000001']

/** Keys of a keyset cursor at and past the edges of what PostgreSQL reads. */
const edgeKeys = [
  '1', '-1', '0', '9223372036854775807', '9223372036854775808', '-99999999999999999999', '1600000000000000', 'Tue, 01 Jan 2021',
  '2021-01-01T09:15:27.243860Z', '0000-01-01T00:00:00Z', '0001-01-01T00:00:00.000000Z', '9999-12-31T23:59:59.999999Z',
  '9999-99-99T99:99:99Z', '-271821-04-20T00:00:00Z', '275760-09-13T00:00:00.000Z', '2021-02-30T00:00:00Z', '2021-01-01T::Z',
  '00000000-0000-4000-8000-000000000000', '-'.repeat(36), 'g'.repeat(36), `msg_${'0'.repeat(32)}`, '\u0000', '\ud800', 'x'.repeat(101),
]
/** A cursor as the API writes one (base64url of a JSON array of strings), holding edge keys: it must be refused or honoured, never a 500. */
const forgedCursor = fc
  .array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...edgeKeys) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }), { minLength: 1, maxLength: 3 })
  .map((keys) => Buffer.from(JSON.stringify(keys)).toString('base64url'))
/** Times at the edges of years 0001-9999, with offsets that carry them across. */
const edgeTimes = fc
  .tuple(
    fc.constantFrom('0001-01-01', '9999-12-31', '1970-01-01', '2000-02-29', '2021-02-29', '0000-01-01', '10000-01-01'),
    fc.constantFrom('T00:00:00', 'T23:59:59.999999', ' 00:30:00', 'T24:00:00', ''),
    fc.constantFrom('Z', '+14:00', '-14:00', '+18:00', '-18:01', '+01:00', ''),
  )
  .map(([date, time, zone]) => `${date}${time}${zone}`)

const hostileString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...hostileStrings) },
  { weight: 1, arbitrary: forgedCursor },
  { weight: 1, arbitrary: edgeTimes },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 80 }) },
)
/** Nesting of `depth` levels as JSON text. */
const deepText = (depth: number, open: string) => `${open.repeat(depth)}1${(open === '[' ? ']' : '}').repeat(depth)}`
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 2, arbitrary: fc.constantFrom(...hostileNumbers).map((n) => new Raw(n)) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], { a: 1 }, -1, 0, 2 ** 53) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(10, 100, 1_000, 10_000, 200_000), fc.constantFrom('[', '{"a":'))
      .map(([depth, open]) => new Raw(open === '[' ? deepText(depth, '[') : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`)),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
)

const typeOf = (schema: Schema) => (Array.isArray(schema.type) ? schema.type[0] : schema.type)

/** A value the schema accepts, mostly (patterns and examples keep it close to what routes find). */
function validValue(schema: Schema): fc.Arbitrary<unknown> {
  const examples = Array.isArray(schema.examples) && schema.examples.length > 0 ? schema.examples : undefined
  const plain = plainValue(schema)
  // An object's example is whole (a callback URL no resolver here knows): its fields' own examples mix better.
  const weight = typeOf(schema) === 'object' ? 1 : 3
  return examples ? fc.oneof({ weight, arbitrary: fc.constantFrom(...examples) }, { weight: 2, arbitrary: plain }) : plain
}

function plainValue(schema: Schema): fc.Arbitrary<unknown> {
  if ('const' in schema) return fc.constant(schema.const)
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]))
  const union = schema.anyOf ?? schema.oneOf
  if (union) return fc.oneof(...union.map((s) => value(s)))
  switch (typeOf(schema)) {
    case 'string': {
      if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern))
      if (schema.format === 'uuid') return fc.uuid()
      if (schema.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString())
      const minLength = Number(schema.minLength ?? 0)
      const maxLength = Math.min(Number(schema.maxLength ?? 64), 64)
      return fc.string({ minLength, maxLength: Math.max(minLength, maxLength), unit: 'grapheme' })
    }
    case 'integer':
      return fc.integer({ min: Number(schema.minimum ?? -(2 ** 31)), max: Number(schema.maximum ?? 2 ** 31) })
    case 'number':
      return fc.double({ noNaN: true, noDefaultInfinity: true })
    case 'boolean':
      return fc.boolean()
    case 'null':
      return fc.constant(null)
    case 'array':
      return fc.array(value(schema.items ?? {}), { minLength: Number(schema.minItems ?? 0), maxLength: Math.min(Number(schema.maxItems ?? 3), 3) })
    case 'object': {
      if (!schema.properties) return fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
      const required = new Set(schema.required ?? [])
      const properties = Object.fromEntries(Object.entries(schema.properties).map(([k, s]) => [k, value(s)]))
      // Optional fields one time in three, so that requests with all of them valid are common.
      const kept = Object.fromEntries(Object.keys(properties).map((k) => [k, required.has(k) ? fc.constant(true) : fc.nat(2).map((n) => n === 0)]))
      return fc
        .tuple(
          fc.record(properties).chain((record) =>
            fc.record(kept).map((keep) => Object.fromEntries(Object.entries(record).filter(([k]) => keep[k]))),
          ),
          rarely(fc.tuple(fc.constantFrom('extra', '__proto__', 'constructor', ''), hostileValue)),
          rarely(fc.constantFrom(...required, '')),
        )
        .map(([record, extra, drop]) => {
          const out: Record<string, unknown> = Object.assign(Object.create(null) as object, record)
          if (extra) out[extra[0]] = extra[1]
          if (drop) delete out[drop]
          return out
        })
    }
    default:
      return fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' })
  }
}

/** Null mostly; one time in ten the value. */
const rarely = <T>(arbitrary: fc.Arbitrary<T>) => fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, { weight: 1, arbitrary })

/** Mostly valid, now and then hostile, at any depth. */
function value(schema: Schema): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 6, arbitrary: validValue(schema) }, { weight: 1, arbitrary: hostileValue })
}

/** UTF-8 percent-encoding (a lone surrogate becomes U+FFFD, as a client library would send it). */
const percent = (text: string) =>
  [...Buffer.from(text, 'utf8')].map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('')
/** Escapes no UTF-8 can decode to, or malformed. */
const rawEscapes = fc.constantFrom('%ED%A0%80', '%C0%80', '%FF', '%', '%z', '%E2%82', '%00', '%2F', '..', '%2e%2e')

/** A parameter's text in a URL: its value encoded, or raw escapes. */
function urlText(schema: Schema): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: value(schema).map((v) => percent(typeof v === 'string' ? v : v instanceof Raw ? v.text : JSON.stringify(v) ?? '')) },
    { weight: 1, arbitrary: fc.tuple(hostileString, rawEscapes).map(([s, e]) => percent(s) + e) },
    { weight: 2, arbitrary: fc.oneof(forgedCursor, edgeTimes).map(percent) },
  )
}

const authChoices = ['user1', 'user2', 'admin', 'app', 'none', 'unknown', 'malformed'] as const
type Auth = (typeof authChoices)[number]

/** The tokens an operation serves, so that most requests get past authorization to the handler. */
function fittingAuth(op: Operation): Auth[] {
  if (op.path.startsWith('/api/event-types')) return ['admin']
  if (op.path === '/api/events' && op.method === 'POST') return ['app']
  if (/^\/api\/(events|sessions|event-errors)/.test(op.path)) return ['app', 'admin']
  return ['user1', 'admin']
}

interface FuzzRequest {
  method: string
  url: string
  headers: Record<string, string>
  payload?: string
  /** The operation, for coverage and the report. */
  operation: string
  /** The parameters sent, for coverage. */
  sent: string[]
}

function requestFor(op: Operation): fc.Arbitrary<FuzzRequest> {
  const params = op.parameters.map((p) =>
    p.in === 'path'
      ? urlText(p.schema)
      : p.in === 'query'
        ? fc.option(fc.oneof({ weight: 6, arbitrary: urlText(p.schema).map((t) => [t]) }, { weight: 1, arbitrary: fc.array(urlText(p.schema), { minLength: 2, maxLength: 3 }) }), { freq: 2 })
        : fc.option(fc.oneof(fc.stringMatching(/^[\x21-\x7e]{1,40}$/), fc.constantFrom('', ' ', 'x'.repeat(300), 'é', '\t')), { freq: 2 }),
  )
  const body = op.body
    ? fc.oneof(
        { weight: 12, arbitrary: value(op.body).map(serialize) },
        { weight: 1, arbitrary: fc.constantFrom('', '{', 'null', '[]', '"x"', '1e400', deepText(50_000, '['), '{"a":1}{"b":2}', '\ufeff{}') },
      )
    : fc.constant(undefined)
  return fc
    .tuple(
      fc.tuple(...params),
      body,
      fc.oneof({ weight: 5, arbitrary: fc.constantFrom<Auth>(...fittingAuth(op)) }, { weight: 2, arbitrary: fc.constantFrom<Auth>(...authChoices) }),
      fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom<string | undefined>('application/json', 'application/json; charset=utf-8') },
        { weight: 1, arbitrary: fc.constantFrom<string | undefined>('text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', undefined) },
      ),
    )
    .map(([values, payload, auth, contentType]) => {
      let path = op.path
      const query: string[] = []
      const headers: Record<string, string> = {}
      const sent: string[] = []
      op.parameters.forEach((p, i) => {
        const v = values[i] as string | string[] | null
        if (v === null) return
        sent.push(`${p.in}:${p.name}`)
        if (p.in === 'path') path = path.replace(`{${p.name}}`, v as string)
        else if (p.in === 'query') for (const text of v as string[]) query.push(`${p.name}=${text}`)
        else headers[p.name] = v as string
      })
      headers.authorization = auth
      if (payload !== undefined) {
        sent.push('body')
        if (contentType !== undefined) headers['content-type'] = contentType
      }
      return {
        method: op.method,
        url: query.length > 0 ? `${path}?${query.join('&')}` : path,
        headers,
        ...(payload !== undefined && { payload }),
        operation: `${op.method} ${op.path}`,
        sent,
      }
    })
}

let api: TradingApi
let eventsTopic: string
let dropEventsTopic: () => Promise<void>
let reader: StringConsumer
let tokens: Record<Auth, string | undefined>

before(async () => {
  eventsTopic = uniqueName('events')
  dropEventsTopic = await createTestTopic(eventsTopic, 3)
  // A cached token check keeps 10,000 requests fast; revocation is not what is tested here.
  api = await openTradingApi({ EVENTS_TOPIC: eventsTopic, EVENTS_RATE_LIMIT_MAX: '1000000', RATE_LIMIT_MAX: '1000000', AUTH_CACHE_MS: '600000', BTC_PRICE_MAX_AGE_MS: '86400000' })
  // A fresh BTC quote (for the whole run), so that BTC orders are priced, not refused as stale.
  await writeQuote(api.redis, { EUR: { price: '50000.00' }, GBP: { price: '42000.50' }, USD: { price: '61234.50' } })
  const app = await createApp(api.testDb.db, 'fuzz-app')
  // The unsubscribe links' key is made on first use, by whatever request comes first (a
  // refused one too): made here, it is no row a fuzzed request stored.
  await createUnsubscribeSigner(api.testDb.db).tokenFor('1')
  tokens = {
    user1: `Bearer ${api.tokens.user1}`,
    user2: `Bearer ${api.tokens.user2}`,
    admin: `Bearer ${api.tokens.admin}`,
    app: `Bearer ${app.token}`,
    none: undefined,
    unknown: `Bearer bourse_${'x'.repeat(43)}`,
    malformed: 'Basic dXNlcjE6cHc=',
  }
  reader = createReaderConsumer()
})
after(async () => {
  await reader?.close()
  await api?.close()
  await dropEventsTopic?.()
})

/** The operations of the API's own document, with their parameters and JSON body schema. */
function operationsOf(doc: { paths: Record<string, Record<string, { parameters?: Parameter[]; requestBody?: { content: Record<string, { schema: Schema }> } }>> }): Operation[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      parameters: op.parameters ?? [],
      ...(op.requestBody && { body: op.requestBody.content['application/json']!.schema }),
    })),
  )
}

/** Row counts of every table of the test schema, and the end offsets of both topics. */
async function snapshot(): Promise<Map<string, number>> {
  const schema = api.testDb.schema
  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = ${schema} and table_type = 'BASE TABLE'`.execute(api.testDb.db)
  const counts = new Map<string, number>()
  const { rows } = await sql<{ name: string; n: number }>`${sql.join(
    tables.rows.map((t) => sql`select ${t.name} as name, count(*)::int as n from ${sql.id(schema, t.name)}`),
    sql` union all `,
  )}`.execute(api.testDb.db)
  for (const row of rows) counts.set(`table ${row.name}`, row.n)
  for (const [name, topic] of [['orders', api.topic], ['events', eventsTopic]] as const) {
    counts.set(`topic ${name}`, Number((await endOffsets(topic, reader)).reduce((a, b) => a + b, 0n)))
  }
  return counts
}

/** An answer, or a rejection when none came in time (a hung request is a finding too). */
async function send(request: FuzzRequest) {
  const headers = { ...request.headers }
  const auth = tokens[headers.authorization as Auth]
  if (auth === undefined) delete headers.authorization
  else headers.authorization = auth
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer within 10 s')), 10_000)
  })
  try {
    if (request.operation === 'GET /api/stocks/stream') {
      // An event stream never ends: its answer is taken at its headers, and a 200 is closed at once.
      const res = await Promise.race([api.app.inject({ method: 'GET', url: request.url, headers, payloadAsStream: true }), timeout])
      if (res.statusCode === 200) {
        res.stream().destroy()
        ;(res.raw.res as { destroy(): void }).destroy()
        return { statusCode: res.statusCode, headers: res.headers, body: '' }
      }
      return { statusCode: res.statusCode, headers: res.headers, body: await text(res.stream()) }
    }
    return await Promise.race([api.app.inject({ method: request.method as 'GET', url: request.url, headers, ...(request.payload !== undefined && { payload: request.payload }) }), timeout])
  } finally {
    clearTimeout(timer)
  }
}

test(`${REQUESTS} requests generated from the OpenAPI document: no 5xx, and refused requests store nothing`, async (t) => {
  t.diagnostic(`seed ${SEED} (replay with BOURSE_FUZZ_SEED=${SEED})`)
  const operations = operationsOf(api.app.swagger() as never)
  // The document's own probes and pages need no fuzzing of their (absent) input; they are sent too.
  const arbitraries = operations.map(requestFor)
  const coverage = new Map<string, Set<string>>(operations.map((op) => [`${op.method} ${op.path}`, new Set<string>()]))
  const statuses = new Map<string, Map<number, number>>()
  const failures: string[] = []
  const unsendable: string[] = []
  const started = performance.now()

  let before = await snapshot()
  for (let from = 0; from < REQUESTS; from += BATCH) {
    const size = Math.min(BATCH, REQUESTS - from)
    // Every operation in turn, so each gets its share whatever the seed.
    const batch = Array.from({ length: size }, (_, i) => from + i).map((n) => {
      const index = n % operations.length
      return fc.sample(arbitraries[index]!, { seed: SEED + n, numRuns: 1 })[0]!
    })
    const expected = new Map<string, number>()
    const add = (key: string, n: number) => expected.set(key, (expected.get(key) ?? 0) + n)
    for (const [i, request] of batch.entries()) {
      let res: Awaited<ReturnType<typeof send>>
      try {
        res = await send(request)
      } catch (err) {
        if ((err as Error).message.startsWith('no answer')) failures.push(`#${from + i} ${request.operation}: ${(err as Error).message} <- ${request.url}`)
        // A request inject cannot even build (a header value it refuses): no HTTP client could send it either.
        else unsendable.push(`${request.operation}: ${(err as Error).message}`)
        continue
      }
      for (const name of request.sent) coverage.get(request.operation)!.add(name)
      const byStatus = statuses.get(request.operation) ?? new Map<number, number>()
      byStatus.set(res.statusCode, (byStatus.get(res.statusCode) ?? 0) + 1)
      statuses.set(request.operation, byStatus)
      if (res.statusCode >= 500) {
        failures.push(`#${from + i} ${request.operation}: ${res.statusCode} ${res.body.slice(0, 160)} <- ${request.method} ${request.url.slice(0, 300)} ${String(request.payload ?? '').slice(0, 300)}`)
      }
      if (res.statusCode >= 200 && res.statusCode < 300) {
        if (request.operation === 'POST /api/orders' && res.headers['idempotent-replayed'] === undefined) {
          add('table orders', 1)
          add('topic orders', 1)
        } else if (request.operation === 'POST /api/events') {
          add('topic events', 1)
        } else if (request.operation === 'PUT /api/event-types/{category}/{name}' && res.statusCode === 201) {
          add('table event_types', 1)
        } else if (request.operation === 'DELETE /api/event-types/{category}/{name}') {
          add('table event_types', -1)
        } else if (request.operation === 'POST /api/alerts') {
          add('table alerts', 1)
        } else if (request.operation === 'DELETE /api/alerts/{id}') {
          add('table alerts', -1)
        } else if (request.operation === 'POST /api/btc/orders' && res.statusCode === 201) {
          add('table btc_orders', 1)
        } else if (request.operation === 'POST /api/reports') {
          add('table service_reports', 1)
        }
      }
    }
    const now = await snapshot()
    for (const [key, count] of now) {
      const moved = count - (before.get(key) ?? 0)
      if (moved !== (expected.get(key) ?? 0)) {
        failures.push(`batch from #${from}: ${key} moved by ${moved}, the accepted requests account for ${expected.get(key) ?? 0}`)
      }
    }
    before = now
  }
  const elapsedMs = performance.now() - started

  for (const [operation, byStatus] of statuses) {
    t.diagnostic(`${operation}: ${JSON.stringify(Object.fromEntries([...byStatus].sort((a, b) => a[0] - b[0])))}`)
  }
  t.diagnostic(`${REQUESTS} requests in ${Math.round(elapsedMs)} ms; ${unsendable.length} could not be built by inject`)
  for (const failure of failures.slice(0, 50)) t.diagnostic(`failure ${failure}`)

  const missing = operations.flatMap((op) => {
    const seen = coverage.get(`${op.method} ${op.path}`)!
    const wanted = [...op.parameters.map((p) => `${p.in}:${p.name}`), ...(op.body ? ['body'] : [])]
    return seen.size === 0 && wanted.length === 0 ? [] : wanted.filter((name) => !seen.has(name)).map((name) => `${op.method} ${op.path} ${name}`)
  })
  assert.deepEqual(missing, [], 'every parameter of every operation was sent')
  assert.ok(
    operations.every((op) => (statuses.get(`${op.method} ${op.path}`)?.size ?? 0) > 0),
    'every operation was answered',
  )
  assert.ok(unsendable.length < REQUESTS / 100, `few requests cannot be built: ${unsendable.slice(0, 3).join('; ')}`)
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} failures (replay with BOURSE_FUZZ_SEED=${SEED})`)
})
