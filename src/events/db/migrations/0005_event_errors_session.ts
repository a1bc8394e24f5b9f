/**
 * `GET /api/event-errors?session_id=...`: a session's errors, newest first, through an
 * index of their own. Without it the query walks every error newest first until it has
 * found a page of the session's, which costs as much as the errors stored after them.
 * Errors without a usable session (null) are left out of the index: no query asks for them.
 */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('event_errors_session_time')
    .on('event_errors')
    .columns(['session_id', 'stored_at desc', 'id desc'])
    .where(sql.ref('session_id'), 'is not', null)
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('event_errors_session_time').ifExists().execute()
}
