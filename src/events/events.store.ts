/**
 * How the events worker stores a judged batch: valid events into `events`, the invalid ones
 * into `event_errors`, each id in at most one of them and at most once, whatever replays
 * bring back. Every store holds the workers' advisory lock of the schema.
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import { copyIn, copyText, withConnection } from '../platform/db/index.ts'
import { isPermanent } from '../platform/retry.ts'
import type { EventReason } from './event-validation.ts'

/** A row for `events`, as the store writes it. */
export interface EventRecord {
  id: string
  app_id: string
  session_id: string
  category: string
  name: string
  data: unknown
  occurred_at: string
  received_at: string
  validated: boolean
}

/** A row for `event_errors`, as the store writes it. */
export interface ErrorRecord {
  id: string
  app_id: string
  session_id: string | null
  category: string | null
  name: string | null
  raw: unknown
  reasons: EventReason[]
  received_at: string
}

/**
 * Opens a store's transaction with the workers' advisory lock (migration 0013's function
 * takes the same key). The lock is held over several round trips, so the transaction
 * bounds itself: a connection that stalls half-open (the worker gone, the server not told)
 * is ended by the server after a minute idle in the transaction, a COPY left waiting for
 * data is cancelled after a minute, and the lock goes with them. A batch's store takes
 * well under a second; a timeout is not a refusal, so the store is retried.
 */
const BEGIN_LOCKED =
  "begin; set local idle_in_transaction_session_timeout = '60s'; set local statement_timeout = '60s'; " +
  "select pg_advisory_xact_lock(hashtextextended(current_schema() || '.bourse_events_store', 0))"

/**
 * Writes one batch: valid events and errors, each skipping ids present in either table.
 * Resolves to how many rows each insert added.
 *
 * Most batches hold only ids never stored (the intake makes a new UUIDv7 for each event;
 * only a replay after a crash or a rebalance brings ids back), and for them the valid
 * events go into `events` by COPY, PostgreSQL's cheapest way in ({@link storeByCopy}). A
 * batch that meets a stored id, or anything else PostgreSQL refuses, or a text COPY would
 * store differently (see {@link copyLine}), is stored by {@link storeByCall} instead, which
 * skips what is there and whose refusals the worker handles as before.
 */
export async function storeRecords(db: Db, judged: Classified): Promise<{ stored: number; rejected: number }> {
  return (await storeByCopy(db, judged)) ?? storeByCall(db, judged)
}

/**
 * One transaction under the workers' lock: no id of the batch may be in `event_errors`
 * (one query; the lock keeps it so until the commit), the valid events are copied into
 * `events`, where an id already stored fails the unique index and rolls everything back,
 * and the errors are inserted skipping ids in `events` (which now include the batch's).
 * Undefined when PostgreSQL refused any of it (a stored id, an unknown app, text it cannot
 * hold): nothing was written, and {@link storeByCall} decides. A lost connection throws.
 */
export async function storeByCopy(db: Db, { ids, eventsCopy, errors }: Classified): Promise<{ stored: number; rejected: number } | undefined> {
  if (eventsCopy === undefined) return undefined
  return withConnection(db, async (client) => {
    await client.query(BEGIN_LOCKED)
    try {
      const clash = await client.query('select 1 from event_errors where id = any($1::uuid[]) limit 1', [ids])
      if (clash.rowCount !== 0) {
        await client.query('rollback')
        return undefined
      }
      const stored = eventsCopy === '' ? 0 : await copyIn(client, EVENTS_COPY, eventsCopy)
      const rejected = errors === '[]' ? 0 : ((await client.query(INSERT_ERRORS, [errors])).rowCount ?? 0)
      await client.query('commit')
      return { stored, rejected }
    } catch (err) {
      if (!isPermanent(err)) throw err
      await client.query('rollback')
      return undefined
    }
  })
}

/** The columns of `events` a batch's COPY text holds, in its order (see `copyLine`). */
const EVENTS_COPY = 'copy events (id, app_id, session_id, category, name, data, occurred_at, received_at, validated) from stdin'

/** The errors of a batch stored by COPY, skipping ids in `events`: as `bourse_store_events` inserts them. */
const INSERT_ERRORS = `
  insert into event_errors (id, app_id, session_id, category, name, raw, reasons, received_at)
  select r.id, r.app_id, r.session_id, r.category, r.name, r.raw, r.reasons, r.received_at
  from jsonb_to_recordset($1::jsonb) as r(
    id uuid, app_id uuid, session_id text, category text, name text, raw jsonb, reasons jsonb, received_at timestamptz)
  where not exists (select 1 from events e where e.id = r.id)
  on conflict (id) do nothing`

/**
 * A valid event's line of COPY text, its fields tab-separated (a valid event's `data` is an
 * object), or undefined when a text field holds an unpaired surrogate: its UTF-8 would turn
 * it into U+FFFD and COPY would store that, where the call refuses the event (jsonb keeps
 * the escape and rejects it), so such a batch goes to the call.
 */
export function copyLine(r: EventRecord): string | undefined {
  const texts = [r.id, r.app_id, r.session_id, r.category, r.name]
  if (!texts.every((text) => text.isWellFormed())) return undefined
  const [id, appId, session, category, name] = texts.map(copyText)
  return `${id}\t${appId}\t${session}\t${category}\t${name}\t${copyText(JSON.stringify(r.data))}\t${r.occurred_at}\t${r.received_at}\t${r.validated ? 't' : 'f'}\n`
}

/**
 * The COPY text of a batch's valid events (see {@link copyLine}), or undefined when one of
 * them cannot go through COPY as the call would store it.
 */
export function copyLines(events: readonly EventRecord[]): string | undefined {
  let text = ''
  for (const record of events) {
    const line = copyLine(record)
    if (line === undefined) return undefined
    text += line
  }
  return text
}

/**
 * One round trip: `bourse_store_events` (migration 0013) takes the workers' advisory lock
 * and inserts both kinds of rows in one statement, in the transaction of the call itself,
 * skipping ids already stored. The lock is one for every worker on this schema: the "not
 * in the other table" checks are only sound if no other transaction inserts the same id
 * concurrently, and the inserts' snapshot, taken once it is held, sees every earlier
 * holder's rows. In one statement the two inserts share a snapshot, so neither sees the
 * other's rows: harmless, since a batch never holds an id twice.
 */
export async function storeByCall(db: Db, { events, errors }: Classified): Promise<{ stored: number; rejected: number }> {
  const { rows } = await sql<{ stored_count: string; rejected_count: string }>`
    select stored_count, rejected_count from bourse_store_events(${JSON.stringify(events)}::jsonb, ${errors}::jsonb)
  `.execute(db)
  return { stored: Number(rows[0]!.stored_count), rejected: Number(rows[0]!.rejected_count) }
}

/**
 * A batch's events judged valid and invalid, as the rows to store. The COPY text of the
 * valid ones and the JSON of the errors (about 1 MB for 2,500 events, milliseconds to
 * write) are written while the batch before is stored rather than between two stores.
 */
export interface Classified {
  /** How many events were judged (valid and invalid). */
  count: number
  /** Every judged event's id. */
  ids: string[]
  /** The valid events' rows. */
  events: EventRecord[]
  /** The valid events as COPY text for `events` (see `copyLines`); undefined when they must go to the call. */
  eventsCopy: string | undefined
  /** The invalid events' rows, an `ErrorRecord[]` in JSON. */
  errors: string
}

