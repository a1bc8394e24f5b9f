/**
 * Column types shared by the domains' tables: how pg reads and Kysely writes timestamps,
 * money (`numeric`, read as a string: no float rounding) and bigints.
 */
import type { ColumnType } from 'kysely'

/** A timestamp column with a database default. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, never>
/** A numeric column: read as a string, written as a string or number. */
export type Numeric = ColumnType<string, string | number, string | number>
/** A bigint column read as a string by pg, written as a number or string. */
export type BigIntColumn = ColumnType<string, string | number | bigint, string | number | bigint>
