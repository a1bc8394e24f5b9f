/**
 * The application's database, composed from its domains: every table (`Database`), the
 * Kysely handle typed with them (`Db`), and every migration. The platform opens and
 * migrates a pool without knowing any of this; the services get it through
 * `src/services/shape.ts`, and domain code imports `type Db` from here.
 *
 * It reads each domain's `db/index.ts` (tables and migrations only), not the domain's
 * `index.ts`: the domain's code imports this module, so going through its index would be
 * an import cycle.
 */
import type { Kysely } from 'kysely'
import { type AlertsTables, alertsMigrations } from './alerts/db/index.ts'
import type { AuthTables } from './auth/db/index.ts'
import { type BtcTables, btcMigrations } from './btc/db/index.ts'
import { type EventsTables, eventsMigrations } from './events/db/index.ts'
import { type OperationsTables, operationsMigrations } from './operations/db/index.ts'
import { composeMigrations } from './platform/db/index.ts'
import { type TradingTables, tradingMigrations } from './trading/db/index.ts'

/** Every table, for `Kysely<Database>`: each domain declares its own. */
export type Database = AuthTables & TradingTables & EventsTables & AlertsTables & BtcTables & OperationsTables

/** The database handle of every service and repository. */
export type Db = Kysely<Database>

/**
 * Every migration of every domain, applied in name order (`bourse migrate`, and every
 * service that declares `needs.db`). A name defined by two domains is refused.
 */
export const migrations = composeMigrations(tradingMigrations, eventsMigrations, alertsMigrations, btcMigrations, operationsMigrations)
