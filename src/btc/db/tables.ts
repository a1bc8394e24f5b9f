/**
 * The BTC domain's tables, as Kysely sees them. Its migrations (`./migrations`) create
 * them; these types must follow every migration.
 *
 * Amounts are `numeric`: pg returns them as strings (no float rounding).
 */
import type { ColumnType, Selectable } from 'kysely'
import type { CreatedAt, Numeric } from '../../platform/db/columns.ts'

/** BTC buy orders. */
export interface BtcOrdersTable {
  id: string
  user_id: string
  /** EUR, GBP or USD. */
  currency: string
  /** The fiat amount paid, 2 decimals. */
  amount: Numeric
  /** The quote's price of 1 BTC in `currency`, as the provider gave it. */
  btc_price: Numeric
  /** amount / btc_price to 8 decimals, rounded toward zero; at least 1 satoshi. */
  btc_amount: Numeric
  /** The sum of `btc_amount` over every order up to and including this one, in the order the cap admitted them. */
  btc_total_after: Numeric
  price_source: string
  price_fetched_at: ColumnType<Date, Date | string, Date | string>
  idempotency_key: string | null
  /** The fingerprint telling a retry from another request under the same key. */
  request_hash: string | null
  created_at: CreatedAt
}

/** The one row holding the sum of every order's `btc_amount`. */
export interface BtcTotalsTable {
  id: ColumnType<boolean, boolean | undefined, never>
  btc_total: Numeric
}

/** Every table of the domain. */
export interface BtcTables {
  btc_orders: BtcOrdersTable
  btc_totals: BtcTotalsTable
}

/** A BTC order as read. */
export type BtcOrderRow = Selectable<BtcOrdersTable>
