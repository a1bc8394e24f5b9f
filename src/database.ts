/**
 * The application's database, composed from its domains: every table (`Database`), the
 * Kysely handle typed with them (`Db`), and every migration. The platform opens and
 * migrates a pool without knowing any of this; services get it through
 * `src/services/shape.ts`, domain code imports `type Db` from here.
 */
import type { Kysely } from 'kysely'
import type { AuthTables } from './auth/db/tables.ts'
import type { EventsTables } from './events/db/tables.ts'
import { composeMigrations } from './platform/db/index.ts'
import * as accounts from './platform/db/migrations/0001_accounts.ts'
import * as events from './platform/db/migrations/0002_events.ts'
import * as finishOrders from './platform/db/migrations/0003_finish_orders.ts'
import * as callbacksInFinish from './platform/db/migrations/0004_callbacks_in_finish.ts'
import * as eventErrorsSession from './platform/db/migrations/0005_event_errors_session.ts'
import type { TradingTables } from './trading/db/tables.ts'

/** Every table, for `Kysely<Database>`: each domain declares its own. */
export type Database = AuthTables & TradingTables & EventsTables

/** The database handle of every service and repository. */
export type Db = Kysely<Database>

/** Every migration, in order. */
export const migrations = composeMigrations({
  '0001_accounts': accounts,
  '0002_events': events,
  '0003_finish_orders': finishOrders,
  '0004_callbacks_in_finish': callbacksInFinish,
  '0005_event_errors_session': eventErrorsSession,
})
