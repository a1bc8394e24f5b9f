/**
 * Reader of Redis fixtures: lines of `SET key 'json'` (the form of the seed's
 * `redis_data.txt`). Stocks and users are told apart by their JSON.
 *
 * Values come back exactly as written: a stock keeps its JSON text (see
 * {@link FixtureStock.json}), and a user's credit is checked and kept as decimal text, so
 * that no number goes through a float or a Lua cjson (which keeps 14 significant digits).
 */
import { readFile } from 'node:fs/promises'
import { quote, QUOTE_MAX_CHARS, truncate } from '../platform/quote.ts'
import { contractIdProblem, exactAmountText } from '../trading/index.ts'
import { stockNameProblem } from './tick.ts'

/** A stock from a fixture: the contract JSON, with `time` and `price` of equal length. */
export interface FixtureStock {
  kind: 'stock'
  key: string
  /** The value, parsed (numbers as JavaScript numbers: to read, not to write). */
  value: Record<string, unknown> & { time: string[]; price: Array<number | ''> }
  /** The value's JSON text as the fixture has it: what `seedStock` stores, digit for digit. */
  json: string
}
/** A user from a fixture: `{ id, credit }`. */
export interface FixtureUser {
  kind: 'user'
  key: string
  value: Record<string, unknown> & { id: number; credit: number }
  /** The credit as plain decimal text, exactly as written (`1.5e3` gives `1500`). */
  credit: string
}
export type FixtureEntry = FixtureStock | FixtureUser

/** Parse result: entries in file order, and errors naming their line. */
export interface Fixture {
  entries: FixtureEntry[]
  errors: string[]
}

const SET_LINE = /^SET\s+(\S+)\s+'(.*)'\s*$/i

/** The fields a user's value may have: an account keeps only these. */
const USER_FIELDS = new Set(['id', 'credit'])

/** The source text of a JSON number (the reviver's third argument, Node 21+). */
function numberSource(json: string, field: string): string {
  let source = ''
  JSON.parse(json, function (this: unknown, key: string, value: unknown, context?: { source?: string }) {
    if (key === field && typeof value === 'number' && this !== null && typeof this === 'object' && !Array.isArray(this)) {
      source = context?.source ?? String(value)
    }
    return value
  })
  return source
}

function classify(key: string, value: unknown, json: string): FixtureEntry | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'value must be a JSON object'
  const record = value as Record<string, unknown>
  if ('credit' in record) {
    if (!/^user\d+$/.test(key)) return `user key ${quote(key)} must look like user1, user2, ...`
    if (typeof record.credit !== 'number' || !Number.isFinite(record.credit) || record.credit < 0) {
      return 'credit must be a non-negative number'
    }
    if (typeof record.id !== 'number') return 'id must be an integer'
    const idProblem = contractIdProblem(record.id)
    if (idProblem) return idProblem
    const extra = Object.keys(record).find((field) => !USER_FIELDS.has(field))
    if (extra !== undefined) return `field ${quote(extra)} cannot be kept: a user holds only id and credit`
    // The text, not the float: 1234567890123456.7 is a credit, 1234567890123456.8 another.
    const source = numberSource(json, 'credit')
    const credit = exactAmountText(source)
    if (!credit.ok) return `credit ${truncate(source, QUOTE_MAX_CHARS)} ${credit.reason}`
    return { kind: 'user', key, value: record as FixtureUser['value'], credit: credit.text }
  }
  const problem = stockNameProblem(key)
  if (problem) return problem
  const { time, price } = record
  if (!Array.isArray(time) || !time.every((t) => typeof t === 'string' && !/[",\\]/.test(t))) {
    return 'time must be a list of strings without commas, quotes or backslashes'
  }
  if (!Array.isArray(price) || !price.every((p) => p === '' || (typeof p === 'number' && Number.isFinite(p)))) {
    return 'price must be a list of numbers or ""'
  }
  // A negative price would let BuyStock accept any quantity (a negative cost).
  const negative = price.findIndex((p) => typeof p === 'number' && p < 0)
  if (negative !== -1) return `price ${price[negative]} at position ${negative + 1} is negative: prices must be at least 0`
  if (time.length !== price.length) return `time has ${time.length} entries but price has ${price.length}`
  if (new Set(time).size !== time.length) return 'time has duplicate entries'
  if ('performance' in record && typeof record.performance !== 'number') return 'performance must be a number'
  return { kind: 'stock', key, value: record as FixtureStock['value'], json }
}

/** A key as errors name it: as it is when it is a plain name, quoted and cut otherwise. */
function name(key: string): string {
  return /^[\w-]{1,64}$/.test(key) ? key : quote(key)
}

/** Parses fixture text. Blank lines and `#` comments are skipped. */
export function parseRedisFixture(text: string): Fixture {
  const entries: FixtureEntry[] = []
  const errors: string[] = []
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1
    const trimmed = raw.trim()
    if (trimmed === '' || trimmed.startsWith('#')) return
    const match = SET_LINE.exec(trimmed)
    if (!match) {
      errors.push(`line ${line}: expected SET key 'json'`)
      return
    }
    const [, key = '', json = ''] = match
    let value: unknown
    try {
      value = JSON.parse(json)
    } catch (err) {
      errors.push(`line ${line}: ${name(key)}: invalid JSON (${(err as Error).message})`)
      return
    }
    const entry = classify(key, value, json)
    if (typeof entry === 'string') errors.push(`line ${line}: ${name(key)}: ${entry}`)
    else entries.push(entry)
  })
  return { entries, errors }
}

/** Reads and parses a fixture file. */
export async function readRedisFixture(path: string): Promise<Fixture> {
  return parseRedisFixture(await readFile(path, 'utf8'))
}
