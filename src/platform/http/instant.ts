/**
 * Instants from a request that PostgreSQL must be able to hold: a `date-time` passes the
 * schema's syntax with a leap second (`23:59:60`) or year 0, which the database refuses
 * (a 500), so a route reads such a field through {@link queryInstant}.
 */
import { BadRequest } from './errors.ts'

/** Whether `date` is an instant PostgreSQL's `timestamptz` holds as it is (years 1 to 9999). */
export function isStorableInstant(date: Date): boolean {
  const year = date.getUTCFullYear()
  return !Number.isNaN(date.getTime()) && year >= 1 && year <= 9999
}

/**
 * A `date-time` of the request (its syntax checked by the schema) as a Date; undefined when
 * absent; 400 `validation_failed` naming `field` when PostgreSQL could not hold it.
 */
export function queryInstant(text: string | undefined, field: string): Date | undefined {
  if (text === undefined) return undefined
  const date = new Date(text)
  if (!isStorableInstant(date)) {
    throw new BadRequest(
      `invalid request: ${field}`,
      [{ field, message: 'must be an instant of the years 0001 to 9999, such as 2026-01-02T09:00:00Z' }],
      'validation_failed',
    )
  }
  return date
}
