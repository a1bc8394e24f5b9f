/**
 * The auth domain's table, as Kysely sees it. Migration `0001_accounts` (trading's, see
 * `src/trading/db/migrations`) created it, before the domains owned their migrations.
 */
import type { ColumnType, Selectable } from 'kysely'
import type { CreatedAt } from '../../platform/db/columns.ts'

/** API tokens: only their SHA-256 is stored. */
export interface ApiTokensTable {
  id: string
  token_hash: string
  /** The user the token acts for; null for admin tokens. */
  user_id: string | null
  admin: boolean
  label: string | null
  created_at: CreatedAt
  revoked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** The auth domain's tables, for the application's `Database`. */
export interface AuthTables {
  api_tokens: ApiTokensTable
}

export type ApiTokenRow = Selectable<ApiTokensTable>
