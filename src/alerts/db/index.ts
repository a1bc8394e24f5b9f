/**
 * The alerts domain's database, for `src/database.ts` to compose: its tables and its
 * migrations. Nothing here imports the rest of the domain (which imports `Db` from there).
 */
import type { Migrations } from '../../platform/db/index.ts'
import * as alerts from './migrations/0006_alerts.ts'

export type { AlertsTables } from './tables.ts'

/** The alerts domain's migrations (their numbers are one sequence across the domains). */
export const alertsMigrations: Migrations = {
  '0006_alerts': alerts,
}
