/** Orders in PostgreSQL. */
import { sql } from 'kysely'
import type { Db } from '../platform/db/index.ts'
import type { NewOrder, OrderRow } from '../platform/db/schema.ts'
import { decodeCursor, encodeCursor } from '../platform/db/keyset.ts'
import { BadCursorError, type KeysetPage } from './accounts.repository.ts'

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
 * (created_at, id); the next page starts strictly after it, through the index.
 */
export async function listOrders(
  db: Db,
  filter: { userId?: string | undefined; cursor?: string | undefined; limit: number },
): Promise<KeysetPage<OrderRow>> {
  let query = db.selectFrom('orders').selectAll()
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId)
  if (filter.cursor !== undefined) {
    const [at, id] = decodeCursor(filter.cursor, 2) ?? []
    if (at === undefined || id === undefined || Number.isNaN(Date.parse(at)) || !/^[0-9a-f-]{36}$/.test(id)) {
      throw new BadCursorError('cursor is not valid')
    }
    // Microseconds matter: the cursor keeps PostgreSQL's own text of the timestamp.
    query = query.where(sql<boolean>`(created_at, id) < (${at}::timestamptz, ${id}::uuid)`)
  }
  const rows = await query
    .select(sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('created_at_text'))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute()
  const items = rows.slice(0, filter.limit)
  const last = items[items.length - 1]
  return {
    items: items.map(({ created_at_text: _, ...row }) => row),
    nextCursor: rows.length > filter.limit && last ? encodeCursor([last.created_at_text, last.id]) : null,
  }
}
