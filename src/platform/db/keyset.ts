/**
 * Keyset pagination, written once for every paged list: a page is `{ items, next_cursor }`
 * and its cursor is the opaque sort key of the page's last row, so the next page is an
 * index range scan that costs the same however deep it is.
 */

/** One page of a list; `next_cursor` is null on the last page. The API answers this shape as it is. */
export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

/** Where a page starts and how long it is. */
export interface PageRequest {
  /** `next_cursor` of the previous page. @defaultValue the first page */
  cursor?: string | undefined
  /** Most items in the page. */
  limit: number
}

/**
 * Thrown for a cursor this API did not make (or made for another list). The HTTP error
 * handler answers it with 400 `invalid_cursor` naming `querystring.cursor`.
 */
export class InvalidCursorError extends Error {
  override name = 'InvalidCursorError'
  readonly code = 'invalid_cursor'
  constructor(message = 'cursor is not valid') {
    super(message)
  }
}

/** Encodes the sort key of a page's last row. */
export function encodeCursor(values: readonly string[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url')
}

/** Decodes a cursor of `length` values; undefined when it is not one of ours. */
export function decodeCursor(cursor: string, length: number): string[] | undefined {
  try {
    const values: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (!Array.isArray(values) || values.length !== length) return undefined
    if (!values.every((v) => typeof v === 'string' && v.length <= 100)) return undefined
    return values as string[]
  } catch {
    return undefined
  }
}

/**
 * Whether `text` is an instant PostgreSQL reads as `timestamptz`: ISO 8601 in UTC with up
 * to microseconds (`2021-01-01T09:15:27.243860Z`, as the queries write cursor keys), of
 * years 0001-9999, every field of which exists. `Date.parse` alone accepts texts
 * PostgreSQL refuses (`"1"`, year -271821, hour 99), and a refused bound is a 500.
 */
export function isCursorInstant(text: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?Z$/.exec(text)
  if (!match) return false
  const [year = 0, month = 0, day = 0, hours = 0, minutes = 0, seconds = 0] = match.slice(1).map(Number)
  if (year < 1) return false
  const date = new Date(0)
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hours, minutes, seconds)
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hours &&
    date.getUTCMinutes() === minutes &&
    date.getUTCSeconds() === seconds
  )
}

/** Whether `text` is a UUID in PostgreSQL's text form (hex digits in 8-4-4-4-12). */
export function isCursorUuid(text: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)
}

/** Whether `text` is a decimal integer within `[min, max]` (by default PostgreSQL's `bigint`). */
export function isCursorInteger(text: string, min = -(2n ** 63n), max = 2n ** 63n - 1n): boolean {
  if (!/^-?\d{1,20}$/.test(text)) return false
  const value = BigInt(text)
  return value >= min && value <= max
}

/**
 * The sort key a cursor holds, by name (`keys` in the order {@link keysetPage}'s `keyOf`
 * gives them); undefined without a cursor (the first page). Throws
 * {@link InvalidCursorError} when the cursor is not one of ours or `isValid` refuses the
 * key, so a foreign value never reaches SQL as a bound.
 */
export function readCursor<const K extends string>(
  cursor: string | undefined,
  keys: readonly K[],
  isValid: (key: Record<K, string>) => boolean,
): Record<K, string> | undefined {
  if (cursor === undefined) return undefined
  const values = decodeCursor(cursor, keys.length)
  if (!values) throw new InvalidCursorError()
  const key = {} as Record<K, string>
  keys.forEach((name, i) => {
    key[name] = values[i] as string
  })
  if (!isValid(key)) throw new InvalidCursorError()
  return key
}

/**
 * The page of `limit` rows out of the `limit + 1` a query read (the extra row only says
 * there is a next page), with the cursor after its last row. `keyOf` gives that row's
 * sort key, in the order of {@link readCursor}'s `keys`.
 */
export function keysetPage<T>(rows: readonly T[], limit: number, keyOf: (row: T) => readonly string[]): Page<T> {
  const items = rows.slice(0, limit)
  const last = items.at(-1)
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null }
}

/** The same page with each item turned into `view(item)`. */
export function mapPage<T, U>(page: Page<T>, view: (item: T) => U): Page<U> {
  return { items: page.items.map(view), next_cursor: page.next_cursor }
}
