/**
 * How the events worker judges an event: its `data` against the JSON Schema registered
 * for its type (category + name), its timestamp parsed to the microsecond and checked
 * against the clock. Every problem is collected, so an application fixes an event in one
 * go, and each names the field it is about as a JSON pointer (`/data/host`).
 *
 * Schemas are compiled with Ajv. Registration uses strict mode, so a schema with an
 * unknown keyword, an unknown format or a `required` property it never defines is refused
 * with Ajv's explanation instead of silently validating less than its author meant.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import ajvFormats from 'ajv-formats'
import { quote } from '../platform/quote.ts'

/** One problem with an event: the field (a JSON pointer into the event) and what is wrong. */
export interface EventReason {
  field: string
  message: string
}

/** What the worker does with an event of a type that has no registered schema. */
export type UnknownTypePolicy = 'store' | 'reject'

/** A registered event type, as the registry is built from. */
export interface EventTypeSchema {
  category: string
  name: string
  schema: unknown
}

/** Checks an event's `data`; returns every problem (none when valid). */
export type DataValidator = (data: unknown) => EventReason[]

/** The compiled validators of the registered event types. */
export interface EventTypeRegistry {
  /** The validator of a type, or undefined when none is registered. */
  validatorFor(category: string, name: string): DataValidator | undefined
  /** How many types are registered. */
  readonly size: number
}

/** Thrown when an event type cannot be registered; the message says what is wrong. */
export class InvalidEventTypeError extends Error {
  override name = 'InvalidEventTypeError'
  /** What is wrong: `schema`, `category` or `name`. */
  readonly field: 'schema' | 'category' | 'name'
  constructor(field: 'schema' | 'category' | 'name', message: string) {
    super(message)
    this.field = field
  }
}

/** Most reasons kept for one event: a huge invalid `data` still makes a small error row. */
const MAX_REASONS = 50

/**
 * The two Ajv instances. `addUsedSchema: false` keeps a schema's `$id` from being
 * registered globally, so two event types may use the same `$id` (or change it).
 */
function createAjv(strict: boolean): Ajv {
  // allowUnionTypes: `"type": ["string", "null"]` is ordinary JSON Schema, not a mistake.
  const ajv = new Ajv({ allErrors: true, strict, allowUnionTypes: true, addUsedSchema: false })
  ajvFormats.default(ajv)
  return ajv
}
let strictAjv: Ajv | undefined
let lenientAjv: Ajv | undefined

/** Escapes a property name for a JSON pointer (RFC 6901). */
function pointerSegment(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1')
}

/** One reason per Ajv error, under `base` (`/data`), naming missing and unexpected properties themselves. */
function reasonsFromAjv(errors: readonly ErrorObject[] | null | undefined, base: string): EventReason[] {
  const out: EventReason[] = []
  const seen = new Set<string>()
  for (const error of errors ?? []) {
    let field = base + error.instancePath
    let message = error.message ?? 'is invalid'
    if (error.keyword === 'required') {
      field += `/${pointerSegment(String(error.params.missingProperty))}`
      message = 'is required'
    } else if (error.keyword === 'additionalProperties') {
      field += `/${pointerSegment(String(error.params.additionalProperty))}`
      message = 'is not allowed'
    }
    const key = `${field}\n${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ field, message })
  }
  return out
}

/**
 * Checks that `schema` can be registered: a JSON object, a valid draft-07 JSON Schema and
 * free of what strict mode refuses. Throws {@link InvalidEventTypeError} saying why.
 */
export function assertValidEventSchema(schema: unknown): asserts schema is Record<string, unknown> {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw new InvalidEventTypeError('schema', 'the schema must be a JSON object (a JSON Schema, draft-07)')
  }
  if ((schema as { $async?: unknown }).$async === true) {
    throw new InvalidEventTypeError('schema', 'asynchronous schemas ($async) are not supported')
  }
  strictAjv ??= createAjv(true)
  if (!strictAjv.validateSchema(schema)) {
    const problems = (strictAjv.errors ?? []).map((e) => {
      const allowed = e.keyword === 'enum' ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})` : ''
      return `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${allowed}`
    })
    throw new InvalidEventTypeError('schema', `not a valid JSON Schema: ${[...new Set(problems)].join('; ')}`)
  }
  try {
    strictAjv.compile(schema)
  } catch (err) {
    throw new InvalidEventTypeError('schema', `the JSON Schema is refused: ${(err as Error).message}`)
  } finally {
    // Ajv caches every schema it compiled; this one was only a check.
    strictAjv.removeSchema(schema)
  }
}

/**
 * Compiles the schema of a registered type. Schemas are checked strictly when they are
 * registered, but one written to the table some other way must not stop the worker: it
 * is compiled leniently, and one that does not compile at all makes every event of its
 * type an error saying so (visible, never dropped).
 */
export function compileDataValidator(schema: unknown): DataValidator {
  let validate: ValidateFunction
  try {
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error('the schema is not a JSON object')
    if ((schema as { $async?: unknown }).$async === true) throw new Error('asynchronous schemas are not supported')
    lenientAjv ??= createAjv(false)
    validate = lenientAjv.compile(schema)
    // The registry keeps the function; Ajv's own cache would grow with every reload.
    lenientAjv.removeSchema(schema)
  } catch (err) {
    const message = `cannot be checked: the schema registered for this type does not compile (${(err as Error).message})`
    return () => [{ field: '/data', message }]
  }
  return (data) => (validate(data) ? [] : reasonsFromAjv(validate.errors, '/data'))
}

/**
 * Builds a registry from the registered types. Validators of `previous` whose schema did
 * not change are reused, so reloading the registry every few seconds compiles nothing new.
 */
export function createEventTypeRegistry(types: Iterable<EventTypeSchema>, previous?: EventTypeRegistry): EventTypeRegistry {
  const reusable = previous instanceof CompiledRegistry ? previous.bySchema : new Map<string, DataValidator>()
  const bySchema = new Map<string, DataValidator>()
  const byType = new Map<string, DataValidator>()
  for (const type of types) {
    const text = JSON.stringify(type.schema)
    const validator = bySchema.get(text) ?? reusable.get(text) ?? compileDataValidator(type.schema)
    bySchema.set(text, validator)
    byType.set(typeKey(type.category, type.name), validator)
  }
  return new CompiledRegistry(byType, bySchema)
}

function typeKey(category: string, name: string): string {
  return `${category}\u0000${name}`
}

class CompiledRegistry implements EventTypeRegistry {
  readonly byType: ReadonlyMap<string, DataValidator>
  readonly bySchema: ReadonlyMap<string, DataValidator>
  constructor(byType: ReadonlyMap<string, DataValidator>, bySchema: ReadonlyMap<string, DataValidator>) {
    this.byType = byType
    this.bySchema = bySchema
  }
  get size() {
    return this.byType.size
  }
  validatorFor(category: string, name: string) {
    return this.byType.get(typeKey(category, name))
  }
}

/** A parsed timestamp: the instant, and the same instant as text keeping every microsecond. */
export type ParsedTimestamp =
  | { ok: true; instant: Date; text: string }
  | { ok: false; message: string }

const TIMESTAMP_FORMATS = "'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC) or ISO 8601 with a time zone (2021-01-01T09:15:27.243860Z)"
const timestampPattern =
  /^(\d{4})-(\d{2})-(\d{2})([Tt ])(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/**
 * Parses an event timestamp. Two forms are accepted: the challenge's
 * `2021-01-01 09:15:27.243860` (a space, no zone: UTC) and ISO 8601 / RFC 3339 with `Z`
 * or an offset. A `T` without a zone is refused: ISO 8601 reads it as local time, which
 * is unknowable here. Impossible dates (2021-02-30, 24:00, a leap second) are refused
 * rather than rolled over, as `Date.parse` would. Digits past the microsecond are
 * dropped: PostgreSQL keeps microseconds.
 */
export function parseEventTimestamp(value: string): ParsedTimestamp {
  const m = timestampPattern.exec(value)
  if (!m) return { ok: false, message: `is not a timestamp: expected ${TIMESTAMP_FORMATS}` }
  const [, y, mo, d, separator, h, mi, s, fraction = '', zulu, sign, offH, offM] = m as unknown as string[]
  if (separator !== ' ' && zulu === undefined && sign === undefined) {
    return { ok: false, message: 'has no time zone, so the instant is ambiguous: add Z or an offset (+02:00), or use a space for UTC' }
  }
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  if (year < 1) return { ok: false, message: 'has year 0000, which does not exist' }
  if (month < 1 || month > 12) return { ok: false, message: `is not a valid date: month ${mo} does not exist` }
  if (day < 1 || day > daysInMonth(year, month)) {
    return { ok: false, message: `is not a valid date: ${y}-${mo} has no day ${d}` }
  }
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) {
    return { ok: false, message: `is not a valid time of day: ${h}:${mi}:${s}` }
  }
  let offsetMinutes = 0
  if (sign !== undefined) {
    if (Number(offM) > 59 || Number(offH) * 60 + Number(offM) > 18 * 60) {
      return { ok: false, message: `has an impossible time zone offset ${sign}${offH}:${offM}` }
    }
    offsetMinutes = (sign === '-' ? -1 : 1) * (Number(offH) * 60 + Number(offM))
  }
  const micros = fraction.padEnd(6, '0').slice(0, 6)
  const instant = new Date(0)
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
  instant.setUTCFullYear(year, month - 1, day)
  instant.setUTCHours(Number(h), Number(mi), Number(s), Number(micros.slice(0, 3)))
  instant.setTime(instant.getTime() - offsetMinutes * 60_000)
  // An offset can carry 0001-01-01 or 9999-12-31 out of the years PostgreSQL reads in this form.
  const utcYear = instant.getUTCFullYear()
  if (utcYear < 1 || utcYear > 9999) return { ok: false, message: 'is outside the years 0001-9999 in UTC' }
  // The offset is whole minutes, so the sub-millisecond digits are the same in UTC.
  const text = `${instant.toISOString().slice(0, -1)}${micros.slice(3)}Z`
  return { ok: true, instant, text }
}

/** Options of {@link validateEvent}. */
export interface ValidateEventOptions {
  /** A type without a registered schema: `store` the event unvalidated, or `reject` it. */
  unknownType: UnknownTypePolicy
  /** How far past `now` a timestamp may be (clock skew) before it is an error, in ms. */
  futureToleranceMs: number
  /** The current time, in ms since the epoch. @defaultValue Date.now() */
  now?: number
}

/** The verdict on one event. */
export type EventValidation =
  | {
      ok: true
      /** When the event happened (millisecond precision; see `occurredAtText`). */
      occurredAt: Date
      /** When the event happened as ISO 8601 in UTC with microseconds: what is stored. */
      occurredAtText: string
      /** False when the type has no schema and the event was accepted unvalidated. */
      validated: boolean
    }
  | { ok: false; reasons: EventReason[] }

const eventFields = new Set(['id', 'session_id', 'category', 'name', 'data', 'timestamp'])
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Validates an event as the worker receives it. The intake checked its shape already;
 * it is checked again because Kafka may carry events from elsewhere, and a malformed one
 * must become a visible error rather than crash the worker. Every reason is collected.
 */
export function validateEvent(event: unknown, registry: EventTypeRegistry, options: ValidateEventOptions): EventValidation {
  if (!isObject(event)) return { ok: false, reasons: [{ field: '', message: 'must be a JSON object' }] }
  const reasons: EventReason[] = []
  for (const key of Object.keys(event)) {
    if (!eventFields.has(key)) reasons.push({ field: `/${pointerSegment(key)}`, message: 'is not allowed' })
  }
  const text = (field: string, maxLength: number): string | undefined => {
    const value = event[field]
    if (value === undefined) reasons.push({ field: `/${field}`, message: 'is required' })
    else if (typeof value !== 'string') reasons.push({ field: `/${field}`, message: 'must be a string' })
    else if (value.length === 0 || value.length > maxLength) {
      reasons.push({ field: `/${field}`, message: `must be 1 to ${maxLength} characters` })
    } else return value
    return undefined
  }
  text('session_id', 128)
  const category = text('category', 100)
  const name = text('name', 100)

  const data = event.data
  if (data === undefined) reasons.push({ field: '/data', message: 'is required' })
  else if (!isObject(data)) reasons.push({ field: '/data', message: 'must be an object' })

  let validated = false
  if (category !== undefined && name !== undefined) {
    const validator = registry.validatorFor(category, name)
    if (validator) {
      validated = true
      if (isObject(data)) reasons.push(...validator(data))
    } else if (options.unknownType === 'reject') {
      const message = `no event type is registered for category ${quote(category)} and name ${quote(name)}`
      reasons.push({ field: '/category', message }, { field: '/name', message })
    }
  }

  let parsed: ParsedTimestamp | undefined
  const timestamp = text('timestamp', 64)
  if (timestamp !== undefined) {
    parsed = parseEventTimestamp(timestamp)
    if (!parsed.ok) reasons.push({ field: '/timestamp', message: parsed.message })
    else {
      const now = options.now ?? Date.now()
      const ahead = parsed.instant.getTime() - now
      if (ahead > options.futureToleranceMs) {
        reasons.push({
          field: '/timestamp',
          message: `is in the future: ${parsed.text} is ${ahead} ms after the worker's clock (${new Date(now).toISOString()}), more than the ${options.futureToleranceMs} ms allowed`,
        })
      }
    }
  }

  if (reasons.length > 0 || !parsed?.ok) {
    if (reasons.length > MAX_REASONS) {
      const more = reasons.length - MAX_REASONS + 1
      reasons.splice(MAX_REASONS - 1, Infinity, { field: '', message: `and ${more} more problems` })
    }
    return { ok: false, reasons }
  }
  return { ok: true, occurredAt: parsed.instant, occurredAtText: parsed.text, validated }
}
