/**
 * A transactional outbox in PostgreSQL, written once for every domain that delivers
 * something to the outside world (callbacks, emails, ...): the domain writes a row in the
 * same transaction as the change it reports, and a sender (`outbox-sender.ts`) claims it,
 * delivers it at least once, and records the result. This module knows no domain table:
 * each query names the table it is given ({@link OutboxTable}), in raw SQL.
 *
 * The contract an outbox table keeps (a domain adds its own columns beside these; see
 * {@link addOutboxColumns} and {@link createOutboxDueIndex}, which write exactly this):
 *
 * | column            | type                                                  |
 * | ----------------- | ----------------------------------------------------- |
 * | `id`              | `text` primary key (or `uuid`/`bigint`: {@link OutboxTable.idType}); the delivery's identity, stable across attempts so receivers can deduplicate |
 * | `status`          | `text not null`, `'pending'`, `'delivered'` or `'dead'` |
 * | `attempts`        | `integer not null default 0`                          |
 * | `next_attempt_at` | `timestamptz not null default now()`                  |
 * | `lease_until`     | `timestamptz` (null while not claimed)                |
 * | `expires_at`      | `timestamptz not null`: retried until then, then dead |
 * | `last_error`      | `text`                                                |
 * | `last_status`     | `integer` (e.g. the HTTP status of the last answer)   |
 * | `created_at`      | `timestamptz not null default now()`                  |
 * | `delivered_at`    | `timestamptz`                                         |
 *
 * and the partial due index `(next_attempt_at) where status = 'pending'`, which every claim
 * and {@link nextDueAt} read: it holds only the rows still to deliver, so it stays small
 * however many delivered and dead rows the table keeps.
 *
 * The channel: whoever inserts or replays a row runs {@link notifyOutbox} (`pg_notify` on
 * {@link OutboxTable.channel}) in the same transaction, so the senders, which LISTEN on it,
 * claim the row as soon as it commits. Channels are per database, not per schema: name it
 * with the schema in it (`notifyChannel(topic, schema)` of `src/platform/db`).
 *
 * Leases: a claim is a lease, not a lock held open. `lease_until` is set in the claiming
 * statement, and a sender that dies leaves it to run out; once it has passed, the row is
 * due again and any sender takes it (at least once, with the same `id`). Results are only
 * written to pending rows, so a late result from a sender whose lease ran out can never
 * turn a delivered row back into a pending one. Every pending row keeps `lease_until` null
 * or equal to `next_attempt_at` (see {@link claimDue}).
 */
import { type Expression, type QueryExecutorProvider, type RawBuilder, type SqlBool, sql } from 'kysely'

/**
 * Any Kysely handle or transaction, whatever its tables (`Kysely<Database>`,
 * `Transaction<Database>`): the outbox queries are raw SQL on a table named at run time.
 */
export type OutboxDb = QueryExecutorProvider

/** The SQL types an outbox `id` may have; JavaScript sees it as a string in each case. */
export type OutboxIdType = 'text' | 'uuid' | 'bigint'

/** Which outbox table and which NOTIFY channel wakes its senders. */
export interface OutboxTable {
  /** The table, unqualified (found through the search_path) or `schema.table`. */
  table: string
  /** The LISTEN/NOTIFY channel that wakes the table's senders. */
  channel: string
  /** The SQL type of the `id` column. @defaultValue 'text' */
  idType?: OutboxIdType
}

/** A row's state: to deliver, delivered, or given up (a dead letter, until replayed). */
export type OutboxStatus = 'pending' | 'delivered' | 'dead'

/** The columns every outbox table has (domains add their own beside them). */
export interface OutboxRow {
  /** The delivery's identity, the same at every attempt. */
  id: string
  /** To deliver, delivered, or a dead letter. */
  status: OutboxStatus
  /** Attempts made so far. */
  attempts: number
  /** When the next attempt is due (the lease end while claimed). */
  next_attempt_at: Date
  /** The end of the current claim, or null when not claimed. */
  lease_until: Date | null
  /** After this, a failed row becomes a dead letter instead of being retried. */
  expires_at: Date
  /** What went wrong at the last failed attempt. */
  last_error: string | null
  /** The status of the last answer (an HTTP status, an SMTP code), when there was one. */
  last_status: number | null
  /** When the row was written. */
  created_at: Date
  /** When it was delivered. */
  delivered_at: Date | null
}

const idTypes: ReadonlySet<string> = new Set<OutboxIdType>(['text', 'uuid', 'bigint'])

/** The `id` array type of `outbox`, checked: it is spliced into SQL. */
function idArrayType(outbox: OutboxTable): RawBuilder<unknown> {
  const type = outbox.idType ?? 'text'
  if (!idTypes.has(type)) throw new RangeError(`outbox ${outbox.table}: idType must be text, uuid or bigint (got ${String(type)})`)
  return sql.raw(`${type}[]`)
}

/** Longest `last_error` kept. */
const maxErrorLength = 1000

function afterMs(ms: number) {
  return sql<Date>`now() + ${ms}::double precision * interval '1 millisecond'`
}

/**
 * A condition that is always true and makes the statement's own transaction commit without
 * waiting for the WAL flush. Only for writes whose loss in a database crash costs a
 * resend and nothing else (a claim, a delivered mark): the row is then due again and
 * sent with the same `id`, which at-least-once allows.
 */
const asyncCommit = sql<boolean>`set_config('synchronous_commit', 'off', true) is not null`

/** Options of {@link claimDue}. */
export interface ClaimOptions {
  /** Most rows to claim. */
  limit: number
  /** How long the claim holds, in ms: after it, another sender may take the row. */
  leaseMs: number
  /**
   * More columns to return with each claimed row, in the same statement: a select-list
   * item (or several, comma-separated) that may name the claimed row's columns by the
   * table's name, such as a subquery fetching the signing secret of the row's user:
   * sql`(select u.secret from users as u where u.id = deliveries.user_id) as secret`.
   * @defaultValue none
   */
  extraReturning?: RawBuilder<unknown>
}

/**
 * Claims up to `limit` pending rows that are due and not leased, oldest due first, and
 * leases them for `leaseMs`. `skip locked` lets senders claim side by side, each getting
 * different rows without waiting for the others. Resolves to the claimed rows, all their
 * columns and `extraReturning`'s (the caller names their type `R`).
 *
 * The claim also moves `next_attempt_at` to the end of the lease: a row in flight is not
 * due, so the scan of the due index stops at the first future row instead of walking over
 * every row in flight, and a row whose sender died becomes due exactly when its lease ends
 * ({@link nextDueAt} sees it).
 *
 * The claim commits without waiting for the WAL flush (a lost claim is a resend).
 */
export async function claimDue<R extends OutboxRow>(db: OutboxDb, outbox: OutboxTable, options: ClaimOptions): Promise<R[]> {
  if (options.limit < 1) return []
  const table = sql.table(outbox.table)
  const leaseEnd = afterMs(options.leaseMs)
  const extra = options.extraReturning === undefined ? sql`` : sql`, ${options.extraReturning}`
  const { rows } = await sql<R>`
    update ${table} set lease_until = ${leaseEnd}, next_attempt_at = ${leaseEnd}
    where id in (
      select id from ${table}
      where status = 'pending' and next_attempt_at <= now() and (lease_until is null or lease_until < now())
        and ${asyncCommit}
      order by next_attempt_at
      limit ${options.limit}
      for update skip locked
    )
    returning *${extra}
  `.execute(db)
  return rows
}

/** Gives claims back (a sender closing before it started them): they are due again at once. */
export async function releaseClaims(db: OutboxDb, outbox: OutboxTable, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0
  const result = await sql`
    update ${sql.table(outbox.table)} set lease_until = null, next_attempt_at = now()
    where id = any(${ids}::${idArrayType(outbox)}) and status = 'pending'
  `.execute(db)
  return Number(result.numAffectedRows ?? 0)
}

/**
 * Records successful attempts (`status`: the answer's, e.g. HTTP 200), all in one
 * statement. Resolves to the ids recorded now; the others were no longer pending (their
 * result had been recorded already). Commits without waiting for the WAL flush: a mark
 * lost in a database crash is a resend.
 */
export async function markAllDelivered(
  db: OutboxDb,
  outbox: OutboxTable,
  results: ReadonlyArray<{ id: string; status: number }>,
): Promise<Set<string>> {
  if (results.length === 0) return new Set()
  const { rows } = await sql<{ id: string }>`
    update ${sql.table(outbox.table)} as d
    set status = 'delivered', attempts = d.attempts + 1, delivered_at = now(), last_status = r.status,
      last_error = null, lease_until = null
    from unnest(${results.map((r) => r.id)}::${idArrayType(outbox)}, ${results.map((r) => r.status)}::integer[]) as r(id, status)
    where d.id = r.id and d.status = 'pending' and ${asyncCommit}
    returning d.id
  `.execute(db)
  return new Set(rows.map((r) => String(r.id)))
}

/** A failed attempt, for {@link markFailed}. */
export interface FailedAttempt {
  /** What went wrong (kept as `last_error`, truncated). */
  error: string
  /** The answer's status, when there was an answer. @defaultValue null */
  status?: number | null
  /** When to try again; past `expires_at`, the row becomes a dead letter instead. */
  nextAttemptAt: Date
  /** Retrying cannot help (the recipient does not exist, the input is refused): dead at once. @defaultValue false */
  permanent?: boolean
}

/**
 * Records a failed attempt and schedules the next one, or makes the row a dead letter when
 * the failure is permanent or the next attempt would come after `expires_at`. Resolves to
 * the new status, or undefined when the row was no longer pending.
 */
export async function markFailed(
  db: OutboxDb,
  outbox: OutboxTable,
  id: string,
  attempt: FailedAttempt,
): Promise<'pending' | 'dead' | undefined> {
  const status = attempt.permanent
    ? sql`'dead'`
    : sql`case when ${attempt.nextAttemptAt}::timestamptz > expires_at then 'dead' else 'pending' end`
  const { rows } = await sql<{ status: 'pending' | 'dead' }>`
    update ${sql.table(outbox.table)}
    set status = ${status}, attempts = attempts + 1, next_attempt_at = ${attempt.nextAttemptAt},
      last_error = ${attempt.error.slice(0, maxErrorLength)}, last_status = ${attempt.status ?? null}, lease_until = null
    where id = ${id} and status = 'pending'
    returning status
  `.execute(db)
  return rows[0]?.status
}

/**
 * When a sender should look again: the earliest moment a pending row becomes claimable
 * (leased ones at their lease end, see {@link claimDue}), or undefined. One read of the due
 * index.
 */
export async function nextDueAt(db: OutboxDb, outbox: OutboxTable): Promise<Date | undefined> {
  const { rows } = await sql<{ due: Date | null }>`
    select min(next_attempt_at) as due from ${sql.table(outbox.table)} where status = 'pending'
  `.execute(db)
  return rows[0]?.due ?? undefined
}

/**
 * Wakes the senders of `outbox`. Run it in the transaction that writes the rows: PostgreSQL
 * delivers the notification when it commits, and never if it rolls back.
 */
export async function notifyOutbox(db: OutboxDb, outbox: OutboxTable): Promise<void> {
  await sql`select pg_notify(${outbox.channel}, '')`.execute(db)
}

/** Options of {@link replayDead}. */
export interface ReplayOptions {
  /** How long the replayed row is retried before it is a dead letter again, in ms. */
  retryForMs: number
  /**
   * Only replay the row if this condition holds too (such as "it is this user's"), on the
   * row's columns. @defaultValue no condition
   */
  where?: Expression<SqlBool>
}

/**
 * Sends a dead letter again: pending, due now, retried for `retryForMs` more (attempts
 * keep counting, the `id` stays), and the senders are woken, in one statement. Resolves to
 * the updated row, or undefined when there is no such dead letter.
 */
export async function replayDead<R extends OutboxRow = OutboxRow>(
  db: OutboxDb,
  outbox: OutboxTable,
  id: string,
  options: ReplayOptions,
): Promise<R | undefined> {
  const where = options.where === undefined ? sql`` : sql`and (${options.where})`
  // The outer filter is true for every row (pg_notify returns void, which is not null);
  // being volatile, it runs once per replayed row: no row, no notification. Delivered on
  // commit, with the update.
  const { rows } = await sql<R>`
    with replayed as (
      update ${sql.table(outbox.table)}
      set status = 'pending', next_attempt_at = now(), lease_until = null, expires_at = ${afterMs(options.retryForMs)}
      where id = ${id} and status = 'dead' ${where}
      returning *
    )
    select * from replayed where pg_notify(${outbox.channel}, '') is not null
  `.execute(db)
  return rows[0]
}
