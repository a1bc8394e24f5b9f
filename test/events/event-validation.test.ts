/** Event validation: schemas per type, timestamps to the microsecond, every reason collected. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  assertValidEventSchema,
  createEventTypeRegistry,
  type EventReason,
  InvalidEventTypeError,
  parseEventTimestamp,
  validateEvent,
  type ValidateEventOptions,
} from '../../src/events/event-validation.ts'

/** The challenge's three types, as the migration registers them. */
const page = { host: { type: 'string', minLength: 1 }, path: { type: 'string', minLength: 1 } }
const types = [
  { category: 'page interaction', name: 'pageview', schema: { type: 'object', required: ['host', 'path'], properties: page } },
  {
    category: 'page interaction',
    name: 'cta click',
    schema: { type: 'object', required: ['host', 'path', 'element'], properties: { ...page, element: { type: 'string', minLength: 1 } } },
  },
  {
    category: 'form interaction',
    name: 'submit',
    schema: {
      type: 'object',
      required: ['host', 'path', 'form'],
      properties: {
        ...page,
        form: {
          type: 'object',
          required: ['first_name', 'last_name'],
          properties: { first_name: { type: 'string' }, last_name: { type: 'string' } },
        },
      },
    },
  },
]
const registry = createEventTypeRegistry(types)
const NOW = Date.parse('2024-06-01T12:00:00Z')
const options: ValidateEventOptions = { unknownType: 'store', futureToleranceMs: 60_000, now: NOW }

function event(overrides: Record<string, unknown> = {}) {
  return {
    session_id: 'e2085be5-9137-4e4e-80b5-f1ffddc25423',
    category: 'page interaction',
    name: 'pageview',
    data: { host: 'www.consumeraffairs.com', path: '/' },
    timestamp: '2021-01-01 09:15:27.243860',
    ...overrides,
  }
}

function reasonsOf(value: unknown, opts: ValidateEventOptions = options): EventReason[] {
  const result = validateEvent(value, registry, opts)
  assert.equal(result.ok, false, 'expected the event to be invalid')
  return result.ok ? [] : result.reasons
}

describe('the three challenge types', () => {
  test('valid events pass, validated, with their instant to the microsecond', () => {
    const valid = [
      event(),
      event({ name: 'cta click', data: { host: 'www.consumeraffairs.com', path: '/', element: 'chat bubble' } }),
      event({ category: 'form interaction', name: 'submit', data: { host: 'h', path: '/', form: { first_name: 'John', last_name: 'Doe' } } }),
    ]
    for (const e of valid) {
      const result = validateEvent(e, registry, options)
      assert.deepEqual(result, {
        ok: true,
        occurredAt: new Date('2021-01-01T09:15:27.243Z'),
        occurredAtText: '2021-01-01T09:15:27.243860Z',
        validated: true,
      })
    }
  })

  test('each type checks its own data: a pageview does not need an element, a cta click does', () => {
    assert.equal(validateEvent(event({ data: { host: 'h', path: '/' } }), registry, options).ok, true)
    assert.deepEqual(reasonsOf(event({ name: 'cta click', data: { host: 'h', path: '/' } })), [
      { field: '/data/element', message: 'is required' },
    ])
  })

  test('a submit checks the nested form', () => {
    assert.deepEqual(
      reasonsOf(event({ category: 'form interaction', name: 'submit', data: { host: 'h', path: '/', form: { first_name: 7 } } })),
      [
        { field: '/data/form/last_name', message: 'is required' },
        { field: '/data/form/first_name', message: 'must be string' },
      ],
    )
  })

  test('every reason is collected: data, timestamp and unexpected fields at once', () => {
    const reasons = reasonsOf(event({ name: 'cta click', data: { host: 42, path: '' }, timestamp: '2021-02-30 10:00:00', extra: true }))
    assert.deepEqual(
      reasons.map((r) => r.field).sort(),
      ['/data/element', '/data/host', '/data/path', '/extra', '/timestamp'].sort(),
    )
    assert.ok(reasons.some((r) => r.field === '/timestamp' && /2021-02 has no day 30/.test(r.message)), JSON.stringify(reasons))
    assert.deepEqual(reasons.find((r) => r.field === '/data/host'), { field: '/data/host', message: 'must be string' })
  })

  test('an event that is not even shaped like one is described field by field', () => {
    assert.deepEqual(reasonsOf('nope'), [{ field: '', message: 'must be a JSON object' }])
    const reasons = reasonsOf({ session_id: 5, category: '', data: [], timestamp: 1 })
    assert.deepEqual(reasons, [
      { field: '/session_id', message: 'must be a string' },
      { field: '/category', message: 'must be 1 to 100 characters' },
      { field: '/name', message: 'is required' },
      { field: '/data', message: 'must be an object' },
      { field: '/timestamp', message: 'must be a string' },
    ])
  })

  test('a huge invalid event keeps a bounded list of reasons', () => {
    const wide = { type: 'object', additionalProperties: false }
    const many = createEventTypeRegistry([{ category: 'c', name: 'n', schema: wide }])
    const data = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, i]))
    const result = validateEvent(event({ category: 'c', name: 'n', data }), many, options)
    assert.ok(!result.ok)
    assert.equal(result.reasons.length, 50)
    assert.match(result.reasons.at(-1)!.message, /and 451 more problems/)
  })
})

describe('timestamps', () => {
  test('the challenge format is UTC and keeps microseconds', () => {
    assert.deepEqual(parseEventTimestamp('2021-01-01 09:15:27.243860'), {
      ok: true,
      instant: new Date('2021-01-01T09:15:27.243Z'),
      text: '2021-01-01T09:15:27.243860Z',
    })
    const plain = parseEventTimestamp('2021-01-01 09:15:27')
    assert.ok(plain.ok)
    assert.equal(plain.text, '2021-01-01T09:15:27.000000Z')
  })

  test('ISO 8601 with a zone is converted to UTC, microseconds intact', () => {
    const cases: Array<[string, string]> = [
      ['2021-01-01T09:15:27.243860Z', '2021-01-01T09:15:27.243860Z'],
      ['2021-01-01T11:15:27.243860+02:00', '2021-01-01T09:15:27.243860Z'],
      ['2021-01-01T04:45:27.000001-0430', '2021-01-01T09:15:27.000001Z'],
      ['2021-01-01 00:00:00.5+01:00', '2020-12-31T23:00:00.500000Z'],
      ['2023-01-01 09:15:27.243860Z', '2023-01-01T09:15:27.243860Z'],
      ['2020-02-29T00:00:00Z', '2020-02-29T00:00:00.000000Z'],
      ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000000Z'],
      // Nanoseconds: PostgreSQL keeps microseconds, the rest is dropped.
      ['2021-01-01T09:15:27.123456789Z', '2021-01-01T09:15:27.123456Z'],
      // Years below 100 stay themselves (Date.UTC would make 0050 into 1950).
      ['0050-06-01 00:00:00', '0050-06-01T00:00:00.000000Z'],
    ]
    for (const [input, text] of cases) {
      const parsed = parseEventTimestamp(input)
      assert.ok(parsed.ok, `${input}: ${JSON.stringify(parsed)}`)
      assert.equal(parsed.text, text, input)
      assert.equal(parsed.instant.toISOString(), `${text.slice(0, 23)}Z`, input)
    }
  })

  test('impossible, ambiguous and malformed timestamps are refused with a clear message', () => {
    const cases: Array<[string, RegExp]> = [
      ['2021-02-30 10:00:00', /not a valid date: 2021-02 has no day 30/],
      ['2021-02-29T10:00:00Z', /2021-02 has no day 29/],
      ['1900-02-29 00:00:00', /1900-02 has no day 29/],
      ['2021-04-31 00:00:00', /has no day 31/],
      ['2021-13-01 00:00:00', /month 13 does not exist/],
      ['2021-01-01 24:00:00', /not a valid time of day: 24:00:00/],
      ['2021-01-01 23:59:60', /not a valid time of day/],
      ['2021-01-01T09:15:27', /no time zone.*ambiguous/],
      ['2021-01-01T09:15:27+25:00', /impossible time zone offset/],
      ['0000-01-01 00:00:00', /year 0000/],
      ['yesterday', /is not a timestamp: expected/],
      ['2021-01-01', /is not a timestamp/],
      ['1609492527', /is not a timestamp/],
      ['2021-1-1 9:15:27', /is not a timestamp/],
    ]
    for (const [input, message] of cases) {
      const parsed = parseEventTimestamp(input)
      assert.ok(!parsed.ok, `${input} should be refused`)
      assert.match(parsed.message, message, input)
      assert.deepEqual(reasonsOf(event({ timestamp: input })), [{ field: '/timestamp', message: parsed.message }], input)
    }
  })

  test('a timestamp in the future beyond the tolerance is an error; within it, not', () => {
    const at = (ms: number) => new Date(NOW + ms).toISOString()
    assert.equal(validateEvent(event({ timestamp: at(60_000) }), registry, options).ok, true)
    assert.equal(validateEvent(event({ timestamp: at(-86_400_000) }), registry, options).ok, true)
    const reasons = reasonsOf(event({ timestamp: at(60_001) }))
    assert.equal(reasons.length, 1)
    assert.equal(reasons[0]!.field, '/timestamp')
    assert.match(reasons[0]!.message, /^is in the future: .* 60001 ms after .* more than the 60000 ms allowed$/)
    assert.deepEqual(
      reasonsOf(event({ timestamp: at(1) }), { ...options, futureToleranceMs: 0 }).map((r) => r.field),
      ['/timestamp'],
    )
  })
})

describe('types without a schema', () => {
  const unknown = event({ category: 'video', name: 'play', data: { anything: [1, 2] } })

  test('store: accepted unvalidated', () => {
    const result = validateEvent(unknown, registry, { ...options, unknownType: 'store' })
    assert.ok(result.ok)
    assert.equal(result.validated, false)
  })

  test('store still checks the timestamp and the shape', () => {
    assert.deepEqual(
      reasonsOf({ ...unknown, timestamp: '2021-02-30 00:00:00' }, { ...options, unknownType: 'store' }).map((r) => r.field),
      ['/timestamp'],
    )
  })

  test('reject: an error on the category and the name', () => {
    const reasons = reasonsOf(unknown, { ...options, unknownType: 'reject' })
    assert.deepEqual(reasons.map((r) => r.field), ['/category', '/name'])
    assert.match(reasons[0]!.message, /no event type is registered for category "video" and name "play"/)
  })
})

describe('schemas', () => {
  test('registration is strict: what Ajv refuses is refused with its explanation', () => {
    const refused: Array<[unknown, RegExp]> = [
      [[], /must be a JSON object/],
      ['{"type":"object"}', /must be a JSON object/],
      [{ type: 'strin' }, /not a valid JSON Schema: \/type must be equal to one of the allowed values \(array, boolean/],
      [{ type: 'object', propertes: {} }, /strict mode: unknown keyword: "propertes"/],
      [{ type: 'object', required: ['host'] }, /required property "host" is not defined/],
      [{ type: 'string', format: 'emial' }, /unknown format "emial"/],
      [{ $ref: 'https://example.com/schema.json' }, /can't resolve reference/],
      [{ $async: true, type: 'object' }, /asynchronous/],
    ]
    for (const [schema, message] of refused) {
      assert.throws(
        () => assertValidEventSchema(schema),
        (err: unknown) => err instanceof InvalidEventTypeError && err.field === 'schema' && message.test(err.message),
        JSON.stringify(schema),
      )
    }
    for (const { schema } of types) assertValidEventSchema(schema)
    assertValidEventSchema({ type: 'object', properties: { email: { type: 'string', format: 'email' }, n: { type: ['integer', 'null'] } } })
  })

  test('a stored schema that does not compile makes its events errors saying so, and others are unaffected', () => {
    const broken = createEventTypeRegistry([...types, { category: 'c', name: 'broken', schema: { type: 'strin' } }])
    const result = validateEvent(event({ category: 'c', name: 'broken' }), broken, options)
    assert.ok(!result.ok)
    assert.deepEqual(result.reasons.map((r) => r.field), ['/data'])
    assert.match(result.reasons[0]!.message, /schema registered for this type does not compile/)
    assert.equal(validateEvent(event(), broken, options).ok, true)
  })

  test('a reloaded registry reuses the validators of unchanged schemas', () => {
    const copy = structuredClone(types)
    const reloaded = createEventTypeRegistry(copy, registry)
    assert.equal(reloaded.size, 3)
    assert.equal(reloaded.validatorFor('page interaction', 'pageview'), registry.validatorFor('page interaction', 'pageview'))
    copy[0]!.schema = { type: 'object', required: ['host'], properties: page }
    const changed = createEventTypeRegistry(copy, reloaded)
    assert.notEqual(changed.validatorFor('page interaction', 'pageview'), registry.validatorFor('page interaction', 'pageview'))
    assert.equal(changed.validatorFor('page interaction', 'cta click'), registry.validatorFor('page interaction', 'cta click'))
    assert.equal(validateEvent(event({ data: { host: 'h' } }), changed, options).ok, true)
  })
})
