/**
 * The auth domain's database, for `src/database.ts` to compose: its table. It has no
 * migration of its own yet: `api_tokens` came with trading's `0001_accounts`. Its first
 * would be exported here as `authMigrations`, numbered after the highest of any domain.
 */
export type { AuthTables } from './tables.ts'
