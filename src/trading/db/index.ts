/**
 * The trading domain's database, for `src/database.ts` to compose: its tables and its
 * migrations. Nothing here imports the rest of the domain (which imports `Db` from there).
 */
import type { Migrations } from '../../platform/db/index.ts'
import * as accounts from './migrations/0001_accounts.ts'
import * as finishOrders from './migrations/0003_finish_orders.ts'
import * as callbacksInFinish from './migrations/0004_callbacks_in_finish.ts'

export type { TradingTables } from './tables.ts'

/**
 * Trading's migrations. Names are the ones applied databases have recorded: they never
 * change, and their numbers are one sequence across the domains (the next is the highest
 * of any domain, plus one).
 *
 * `0001_accounts` also creates auth's `api_tokens`: it was written when
 * one migration set held every table, and a released migration is never split or edited,
 * so it stays here, whole.
 */
export const tradingMigrations: Migrations = {
  '0001_accounts': accounts,
  '0003_finish_orders': finishOrders,
  '0004_callbacks_in_finish': callbacksInFinish,
}
