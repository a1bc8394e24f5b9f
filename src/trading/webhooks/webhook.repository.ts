/**
 * The callback outbox in PostgreSQL (`webhook_deliveries`): claiming due deliveries under
 * a lease, recording attempts, dead letters and their replay.
 *
 * A claim is a lease, not a lock held open: `lease_until` is set in the claiming statement,
 * and a sender that dies leaves it to run out; once the lease has passed, the
 * delivery is due again and any sender takes it (at least once, with the same
 * `webhook-id`). Results are only written to pending deliveries, so a late result from a
 * sender whose lease ran out can never turn a delivered callback back into a pending one.
 */
import { sql } from 'kysely'
import { notifyChannel } from '../../platform/db/index.ts'
import type { Db } from '../../database.ts'
import type { WebhookDeliveryRow } from '../db/tables.ts'
import { isCursorInteger, keysetPage, type Page, type PageRequest, readCursor } from '../../platform/db/keyset.ts'

/** A claimed delivery with the signing secret of its user. */
export type ClaimedDelivery = WebhookDeliveryRow & {
  /** The user's current `webhook_secret` (null only if the user vanished meanwhile). */
  webhook_secret: string | null
}

/** Options of {@link claimDueDeliveries}. */
export interface ClaimOptions {
  /** Most deliveries to claim. */
  limit: number
  /** How long the claim holds, in ms: after it, another sender may take the delivery. */
  leaseMs: number
}

/** Longest `last_error` kept. */
const maxErrorLength = 1000

function afterMs(ms: number) {
  return sql<Date>`now() + ${ms}::double precision * interval '1 millisecond'`
}

/**
 * A condition that is always true and makes the statement's own transaction commit without
 * waiting for the WAL flush. Only for writes whose loss in a database crash costs a
 * resend and nothing else (a claim, a delivered mark): the delivery is then due again and
 * sent with the same `webhook-id`, which at-least-once allows.
 */
const asyncCommit = sql<boolean>`set_config('synchronous_commit', 'off', true) is not null`

/**
 * Claims up to `limit` pending deliveries that are due and not leased, oldest due first,
 * and leases them for `leaseMs`. `skip locked` lets senders claim side by side, each
 * getting different rows without waiting for the others.
 *
 * The claim also moves `next_attempt_at` to the end of the lease: a delivery in flight is
 * not due, so the scan of the due index stops at the first future row instead of walking
 * over every delivery in flight, and a delivery whose sender died becomes due exactly when
 * its lease ends ({@link nextDueAt} sees it). Every pending row keeps
 * `lease_until` null or equal to `next_attempt_at`.
 *
 * The claim commits without waiting for the WAL flush (a lost claim is a resend).
 */
export async function claimDueDeliveries(db: Db, options: ClaimOptions): Promise<ClaimedDelivery[]> {
  if (options.limit < 1) return []
  const leaseEnd = afterMs(options.leaseMs)
  return db
    .updateTable('webhook_deliveries')
    .set({ lease_until: leaseEnd, next_attempt_at: leaseEnd })
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', '=', 'pending')
        .where('next_attempt_at', '<=', sql<Date>`now()`)
        .where((w) => w.or([w('lease_until', 'is', null), w('lease_until', '<', sql<Date>`now()`)]))
        .where(asyncCommit)
        .orderBy('next_attempt_at')
        .limit(options.limit)
        .forUpdate()
        .skipLocked(),
    )
    .returningAll()
    .returning((eb) =>
      eb
        .selectFrom('users')
        .select('users.webhook_secret')
        .whereRef('users.id', '=', 'webhook_deliveries.user_id')
        .as('webhook_secret'),
    )
    .execute()
}

/** Gives claims back (a sender closing before it started them): they are due again at once. */
export async function releaseClaims(db: Db, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0
  const result = await db
    .updateTable('webhook_deliveries')
    .set({ lease_until: null, next_attempt_at: sql<Date>`now()` })
    .where('id', 'in', ids)
    .where('status', '=', 'pending')
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** Records a successful attempt (HTTP `status`). False when the delivery was no longer pending. */
export async function markDelivered(db: Db, id: string, status: number): Promise<boolean> {
  return (await markAllDelivered(db, [{ id, status }])).size > 0
}

/**
 * Records successful attempts, all in one statement. Resolves to the ids recorded now;
 * the others were no longer pending (their result had been recorded already). Commits
 * without waiting for the WAL flush: a mark lost in a database crash is a resend.
 */
export async function markAllDelivered(
  db: Db,
  results: ReadonlyArray<{ id: string; status: number }>,
): Promise<Set<string>> {
  if (results.length === 0) return new Set()
  const { rows } = await sql<{ id: string }>`
    update webhook_deliveries as d
    set status = 'delivered', attempts = d.attempts + 1, delivered_at = now(), last_status = r.status,
      last_error = null, lease_until = null
    from unnest(${results.map((r) => r.id)}::text[], ${results.map((r) => r.status)}::integer[]) as r(id, status)
    where d.id = r.id and d.status = 'pending' and ${asyncCommit}
    returning d.id
  `.execute(db)
  return new Set(rows.map((r) => r.id))
}

/** A failed attempt, for {@link markFailed}. */
export interface FailedAttempt {
  /** What went wrong (kept as `last_error`, truncated). */
  error: string
  /** The HTTP status, when there was a response. */
  status?: number | null
  /** When to try again; past `expires_at`, the delivery becomes a dead letter instead. */
  nextAttemptAt: Date
}

/**
 * Records a failed attempt and schedules the next one, or makes the delivery a dead letter
 * when the next attempt would come after `expires_at`. Resolves to the new status, or
 * undefined when the delivery was no longer pending.
 */
export async function markFailed(db: Db, id: string, attempt: FailedAttempt): Promise<'pending' | 'dead' | undefined> {
  const row = await db
    .updateTable('webhook_deliveries')
    .set((eb) => ({
      status: sql<'pending' | 'dead'>`case when ${attempt.nextAttemptAt} > expires_at then 'dead' else 'pending' end`,
      attempts: eb('attempts', '+', 1),
      next_attempt_at: attempt.nextAttemptAt,
      last_error: attempt.error.slice(0, maxErrorLength),
      last_status: attempt.status ?? null,
      lease_until: null,
    }))
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .returning('status')
    .executeTakeFirst()
  return row?.status as 'pending' | 'dead' | undefined
}

/**
 * When the sender should look again: the earliest moment a pending delivery becomes
 * claimable (leased ones at their lease end, see {@link claimDueDeliveries}), or undefined.
 * One read of the due index.
 */
export async function nextDueAt(db: Db): Promise<Date | undefined> {
  const row = await db
    .selectFrom('webhook_deliveries')
    .select((eb) => eb.fn.min('next_attempt_at').as('due'))
    .where('status', '=', 'pending')
    .executeTakeFirst()
  return row?.due ?? undefined
}

/** Wakes the callback senders of `schema`; inside a transaction, once it commits. */
async function notifyDeliveries(db: Db, schema: string): Promise<void> {
  await sql`select pg_notify(${notifyChannel('webhooks', schema)}, '')`.execute(db)
}

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
 * or undefined when there is no such dead letter.
 */
export async function replayDeadLetter(db: Db, id: string, options: ReplayOptions): Promise<WebhookDeliveryRow | undefined> {
  return db.transaction().execute(async (trx) => {
    let update = trx
      .updateTable('webhook_deliveries')
      .set({
        status: 'pending',
        next_attempt_at: sql<Date>`now()`,
        lease_until: null,
        expires_at: afterMs(options.retryForMs),
      })
      .where('id', '=', id)
      .where('status', '=', 'dead')
    if (options.userId !== undefined) update = update.where('user_id', '=', options.userId)
    const row = await update.returningAll().executeTakeFirst()
    if (row) await notifyDeliveries(trx, options.schema)
    return row
  })
}
