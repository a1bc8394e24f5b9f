/**
 * The events domain's database, for `src/database.ts` to compose: its tables and its
 * migrations. Nothing here imports the rest of the domain (which imports `Db` from there).
 */
import type { Migrations } from '../../platform/db/index.ts'
import * as events from './migrations/0002_events.ts'
import * as eventErrorsSession from './migrations/0005_event_errors_session.ts'
import * as storeInOneCall from './migrations/0013_events_store_in_one_call.ts'

export type { EventsTables } from './tables.ts'

/** The events domain's migrations (their numbers are one sequence across the domains). */
export const eventsMigrations: Migrations = {
  '0002_events': events,
  '0005_event_errors_session': eventErrorsSession,
  '0013_events_store_in_one_call': storeInOneCall,
}
