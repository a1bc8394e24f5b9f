/**
 * The operations domain's database, for `src/database.ts` to compose: its tables and its
 * migrations. Nothing here imports the rest of the domain (which imports `Db` from there).
 */
import type { Migrations } from '../../platform/db/index.ts'
import * as serviceReports from './migrations/0009_service_reports.ts'

export type { OperationsTables } from './tables.ts'

/** The operations domain's migrations (their numbers are one sequence across the domains). */
export const operationsMigrations: Migrations = {
  '0009_service_reports': serviceReports,
}
