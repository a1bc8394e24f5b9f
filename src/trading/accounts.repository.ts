/** Users, holdings and transactions in PostgreSQL (the source of truth). */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { HoldingRow, TransactionRow, UserRow } from './db/tables.ts'
import { isCursorInteger, keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'
import { createWebhookSecret } from './webhooks/webhook-signing.ts'

/** A new account. */
export interface NewAccount {
  id: string
  credit: number | string
  /** The numeric `id` of the contract JSON; by default the digits of `userN`. */
  contractId?: number | null
}

/** The range of the `contract_id` column (PostgreSQL `integer`). */
export const CONTRACT_ID_RANGE = Object.freeze({ min: -2_147_483_648, max: 2_147_483_647 })

/** Why a contract `id` cannot be stored in an account, or undefined when it can. */
export function contractIdProblem(id: number): string | undefined {
  if (!Number.isInteger(id)) return 'id must be an integer'
  if (id < CONTRACT_ID_RANGE.min || id > CONTRACT_ID_RANGE.max) {
    return `id ${id} is out of range: an account's id is from ${CONTRACT_ID_RANGE.min} to ${CONTRACT_ID_RANGE.max}`
  }
  return undefined
}

/** The `id` field the contract JSON gives `userN`: N (null for other names). */
export function contractIdOf(userId: string): number | null {
  const match = /^user(\d{1,9})$/.exec(userId)
  return match ? Number(match[1]) : null
}

/**
 * Creates accounts that do not exist yet; existing accounts are left as they are (their
 * credit has a history of trades). Resolves to the rows created.
 */
export async function createAccounts(db: Db, accounts: readonly NewAccount[]): Promise<UserRow[]> {
  if (accounts.length === 0) return []
  return db
    .insertInto('users')
    .values(
      accounts.map((a) => ({
        id: a.id,
        contract_id: a.contractId === undefined ? contractIdOf(a.id) : a.contractId,
        credit: a.credit,
        webhook_secret: createWebhookSecret(),
      })),
    )
    .onConflict((oc) => oc.column('id').doNothing())
    .returningAll()
    .execute()
}

/**
 * Sets existing accounts' credit to the given one (holdings and history stay), bumping
 * their version so the Redis projection follows. Resolves to the rows changed.
 */
export async function resetAccountCredit(db: Db, accounts: readonly NewAccount[]): Promise<UserRow[]> {
  const changed: UserRow[] = []
  for (const account of accounts) {
    const row = await db
      .updateTable('users')
      .set({ credit: String(account.credit), version: sql<string>`version + 1` })
      .where('id', '=', account.id)
      .returningAll()
      .executeTakeFirst()
    if (row) changed.push(row)
  }
  return changed
}

/** A user, or undefined. */
export function findUser(db: Db, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
}

/** A user's holdings with shares, by stock name. */
export function listHoldings(db: Db, userId: string): Promise<HoldingRow[]> {
  return db.selectFrom('holdings').selectAll().where('user_id', '=', userId).where('quantity', '>', '0').orderBy('stock').execute()
}

/** A user's transactions, newest first. Throws `InvalidCursorError` for a foreign cursor. */
export async function listTransactions(db: Db, userId: string, page: PageRequest): Promise<Page<TransactionRow>> {
  let query = db.selectFrom('transactions').selectAll().where('user_id', '=', userId)
  const after = readCursor(page.cursor, ['id'], ({ id }) => isCursorInteger(id, 0n))
  if (after) query = query.where('id', '<', after.id)
  const rows = await query.orderBy('id', 'desc').limit(page.limit + 1).execute()
  return keysetPage(rows, page.limit, (last) => [String(last.id)])
}
