/** Orders in PostgreSQL. */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { NewOrder, OrderRow } from './db/tables.ts'
import { isCursorInstant, isCursorUuid, keysetPage, type Page, type PageRequest, readCursor } from '../platform/db/keyset.ts'

/** Inserts an order unless it exists (the API and the verifier may both insert it). */
export async function insertOrder(db: Db, order: NewOrder): Promise<void> {
  await db.insertInto('orders').values(order).onConflict((oc) => oc.column('id').doNothing()).execute()
}

/** An order, or undefined. */
export function findOrder(db: Db, id: string): Promise<OrderRow | undefined> {
  return db.selectFrom('orders').selectAll().where('id', '=', id).executeTakeFirst()
}

/**
 * Orders newest first, all or one user's. The cursor holds the last row's
 * (created_at, id); the next page starts strictly after it, through the index. Throws
 * `InvalidCursorError` for a foreign cursor.
 */
export async function listOrders(db: Db, filter: { userId?: string | undefined }, page: PageRequest): Promise<Page<OrderRow>> {
  let query = db.selectFrom('orders').selectAll()
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId)
  const after = readCursor(page.cursor, ['at', 'id'], ({ at, id }) => isCursorInstant(at) && isCursorUuid(id))
  // Microseconds matter: the cursor keeps PostgreSQL's own text of the timestamp.
  if (after) query = query.where(sql<boolean>`(created_at, id) < (${after.at}::timestamptz, ${after.id}::uuid)`)
  const rows = await query
    .select(sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('created_at_text'))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit + 1)
    .execute()
  const found = keysetPage(rows, page.limit, (last) => [last.created_at_text, last.id])
  return { items: found.items.map(({ created_at_text: _, ...row }) => row), next_cursor: found.next_cursor }
}
