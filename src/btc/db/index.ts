/**
 * The BTC domain's database, for `src/database.ts` to compose: its tables and its
 * migrations. Nothing here imports the rest of the domain (which imports `Db` from there).
 */
import type { Migrations } from '../../platform/db/index.ts'
import * as btcOrders from './migrations/0007_btc_orders.ts'
import * as btcTotalAfter from './migrations/0008_btc_total_after.ts'
import * as btcPlaceOrders from './migrations/0010_btc_place_orders.ts'
import * as btcPlaceAnswersLess from './migrations/0011_btc_place_answers_less.ts'
import * as btcPlaceEarlierInOneScan from './migrations/0012_btc_place_earlier_in_one_scan.ts'

export type { BtcTables } from './tables.ts'

/** The BTC domain's migrations (their numbers are one sequence across the domains). */
export const btcMigrations: Migrations = {
  '0007_btc_orders': btcOrders,
  '0008_btc_total_after': btcTotalAfter,
  '0010_btc_place_orders': btcPlaceOrders,
  '0011_btc_place_answers_less': btcPlaceAnswersLess,
  '0012_btc_place_earlier_in_one_scan': btcPlaceEarlierInOneScan,
}
