/**
 * Reader of Redis fixtures: lines of `SET key 'json'` (the form of the seed's
 * `redis_data.txt`). Stocks and users are told apart by their JSON.
 */
import { readFile } from 'node:fs/promises'
import { stockNameProblem } from './tick.ts'

/** A stock from a fixture: the contract JSON, with `time` and `price` of equal length. */
export interface FixtureStock {
  kind: 'stock'
  key: string
  value: Record<string, unknown> & { time: string[]; price: Array<number | ''> }
}
/** A user from a fixture: `{ id, credit }`. */
export interface FixtureUser {
  kind: 'user'
  key: string
  value: Record<string, unknown> & { id: number; credit: number }
}
export type FixtureEntry = FixtureStock | FixtureUser

/** Parse result: entries in file order, and errors naming their line. */
export interface Fixture {
  entries: FixtureEntry[]
  errors: string[]
}

const SET_LINE = /^SET\s+(\S+)\s+'(.*)'\s*$/i

function classify(key: string, value: unknown): FixtureEntry | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'value must be a JSON object'
  const record = value as Record<string, unknown>
  if ('credit' in record) {
    if (!/^user\d+$/.test(key)) return `user key ${JSON.stringify(key)} must look like user1, user2, ...`
    if (typeof record.credit !== 'number' || !Number.isFinite(record.credit) || record.credit < 0) {
      return 'credit must be a non-negative number'
    }
    if (typeof record.id !== 'number' || !Number.isInteger(record.id)) return 'id must be an integer'
    return { kind: 'user', key, value: record as FixtureUser['value'] }
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
  if (time.length !== price.length) return `time has ${time.length} entries but price has ${price.length}`
  if (new Set(time).size !== time.length) return 'time has duplicate entries'
  if ('performance' in record && typeof record.performance !== 'number') return 'performance must be a number'
  return { kind: 'stock', key, value: record as FixtureStock['value'] }
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
      errors.push(`line ${line}: ${key}: invalid JSON (${(err as Error).message})`)
      return
    }
    const entry = classify(key, value)
    if (typeof entry === 'string') errors.push(`line ${line}: ${key}: ${entry}`)
    else entries.push(entry)
  })
  return { entries, errors }
}

/** Reads and parses a fixture file. */
export async function readRedisFixture(path: string): Promise<Fixture> {
  return parseRedisFixture(await readFile(path, 'utf8'))
}
