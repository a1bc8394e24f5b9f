/**
 * The callback outbox (`webhook_deliveries`): what the trading domain adds to the
 * platform's outbox (`src/platform/outbox/`), which claims, records and replays its rows.
 * Here: the table and its channel, the signing secret claimed with each delivery, and the
 * dead letters as the API lists and replays them (per user).
 */
import { sql } from 'kysely'
import { notifyChannel } from '../../platform/db/index.ts'
import { type OutboxTable, replayDead } from '../../platform/outbox/outbox.repository.ts'
import type { Db } from '../../database.ts'
import type { WebhookDeliveryRow } from '../db/tables.ts'
import { isCursorInteger, keysetPage, type Page, type PageRequest, readCursor } from '../../platform/db/keyset.ts'

/** The callback outbox of `schema`: `webhook_deliveries`, woken on `bourse_webhooks_<schema>`. */
export function webhookOutbox(schema: string): OutboxTable {
  return { table: 'webhook_deliveries', channel: notifyChannel('webhooks', schema) }
}

/** A claimed delivery with the signing secret of its user. */
export type ClaimedDelivery = WebhookDeliveryRow & {
  /** The user's current `webhook_secret` (null only if the user vanished meanwhile). */
  webhook_secret: string | null
}

/**
 * The column a claim returns beside the delivery's own ({@link ClaimedDelivery}): the
 * user's signing secret, read by the claiming statement itself, so a burst of callbacks
 * costs one statement and no lookup per callback.
 */
export const webhookSecretReturning = sql<string | null>`(
  select users.webhook_secret from users where users.id = webhook_deliveries.user_id
) as webhook_secret`

/** Filter of {@link listDeadLetters}. */
export interface DeadLetterFilter {
  /** Only this user's dead letters. @defaultValue every user */
  userId?: string | undefined
}

/** Microseconds since the epoch of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: the cursor bounds accepted. */
const MIN_MICROS = -62_135_596_800_000_000n
const MAX_MICROS = 253_402_300_799_999_999n

/**
 * Dead letters, newest first, a keyset page at a time. Throws `InvalidCursorError` for a
 * foreign cursor.
 *
 * The cursor holds created_at in microseconds since the epoch (a JS Date would drop the
 * microseconds PostgreSQL keeps, and rows of one millisecond would be skipped or repeated).
 */
export async function listDeadLetters(db: Db, filter: DeadLetterFilter, page: PageRequest): Promise<Page<WebhookDeliveryRow>> {
  let query = db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .select(sql<string>`(extract(epoch from created_at) * 1000000)::bigint::text`.as('created_us'))
    .where('status', '=', 'dead')
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId)
  const after = readCursor(
    page.cursor,
    ['micros', 'id'],
    // The microseconds of an instant of years 0001-9999 (PostgreSQL's range is wider), and a webhook id.
    ({ micros, id }) => isCursorInteger(micros, MIN_MICROS, MAX_MICROS) && /^msg_[0-9a-f]{32}$/.test(id),
  )
  if (after) {
    query = query.where(
      sql<boolean>`(created_at, id) < (timestamptz 'epoch' + ${after.micros}::bigint * interval '1 microsecond', ${after.id})`,
    )
  }
  const rows = await query
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit + 1)
    .execute()
  const found = keysetPage(rows, page.limit, (last) => [last.created_us, last.id])
  return { items: found.items.map(({ created_us: _, ...row }) => row), next_cursor: found.next_cursor }
}

/** Options of {@link replayDeadLetter}. */
export interface ReplayOptions {
  /** How long the replayed delivery is retried before it is a dead letter again, in ms. */
  retryForMs: number
  /** Schema of the tables, naming the channel that wakes the senders. */
  schema: string
  /** Only replay it if it belongs to this user. @defaultValue any user */
  userId?: string
}

/**
 * Sends a dead letter again: pending, due now, retried for `retryForMs` more (attempts keep
 * counting, the `webhook-id` stays), and the senders are woken. Resolves to the updated row,
 * or undefined when there is no such dead letter (or it is another user's).
 */
export async function replayDeadLetter(db: Db, id: string, options: ReplayOptions): Promise<WebhookDeliveryRow | undefined> {
  return replayDead<WebhookDeliveryRow>(db, webhookOutbox(options.schema), id, {
    retryForMs: options.retryForMs,
    ...(options.userId !== undefined && { where: sql<boolean>`user_id = ${options.userId}` }),
  })
}
