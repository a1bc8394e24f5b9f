/**
 * Migration 0013: `bourse_store_events` stores a batch of the events worker by one call,
 * skipping ids in either table, under the lock the previous version's statements take.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import * as storeInOneCall from '../../../../src/events/db/migrations/0013_events_store_in_one_call.ts'
import { openTestDb, type TestDb } from '../../../helpers/db.ts'

let t: TestDb
const appId = randomUUID()

before(async () => {
  t = await openTestDb()
  await t.db.insertInto('apps').values({ id: appId, name: 'store-test', token_hash: randomUUID() }).execute()
})
after(() => t.close())

/** A valid event's row, as the worker sends it. */
const eventRow = (id: string) => ({
  id,
  app_id: appId,
  session_id: 's1',
  category: 'page interaction',
  name: 'pageview',
  data: { host: 'example.com', path: '/' },
  occurred_at: '2021-01-01T09:15:27.243860Z',
  received_at: '2021-01-01T09:15:28.000Z',
  validated: true,
})

/** An invalid event's row, as the worker sends it. */
const errorRow = (id: string) => ({
  id,
  app_id: appId,
  session_id: 's1',
  category: 'page interaction',
  name: 'pageview',
  raw: { session_id: 's1', category: 'page interaction', name: 'pageview', data: {} },
  reasons: [{ field: '/data/host', message: 'is required' }],
  received_at: '2021-01-01T09:15:28.000Z',
})

/** Calls the function; resolves to the counts it answers. */
async function store(events: unknown[], errors: unknown[]): Promise<[number, number]> {
  const { rows } = await sql<{ stored_count: string; rejected_count: string }>`
    select stored_count, rejected_count from bourse_store_events(${JSON.stringify(events)}::jsonb, ${JSON.stringify(errors)}::jsonb)
  `.execute(t.db)
  return [Number(rows[0]!.stored_count), Number(rows[0]!.rejected_count)]
}

/** Where each id is stored: 'events', 'event_errors', both or neither. */
async function placeOf(ids: string[]): Promise<string[]> {
  const { rows } = await sql<{ id: string; place: string }>`
    select i.id::text as id,
      concat_ws('+', case when exists (select 1 from events e where e.id = i.id) then 'events' end,
        case when exists (select 1 from event_errors x where x.id = i.id) then 'event_errors' end) as place
    from unnest(${ids}::uuid[]) with ordinality as i(id, n) order by i.n
  `.execute(t.db)
  return rows.map((r) => r.place)
}

test('a batch is stored with its counts; a replay adds nothing and an id stays in the table that has it', async () => {
  const [a, b, c, d] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()]
  assert.deepEqual(await store([eventRow(a), eventRow(b)], [errorRow(c)]), [2, 1])
  // The replay, where the registry now judges a valid and c invalid the other way round.
  assert.deepEqual(await store([eventRow(b), eventRow(c), eventRow(d)], [errorRow(a)]), [1, 0])
  assert.deepEqual(await placeOf([a, b, c, d]), ['events', 'events', 'event_errors', 'events'])
  const { rows } = await sql<{ data: unknown; occurred_at: Date; validated: boolean }>`
    select data, occurred_at, validated from events where id = ${a}
  `.execute(t.db)
  assert.deepEqual(rows, [{ data: { host: 'example.com', path: '/' }, occurred_at: new Date('2021-01-01T09:15:27.243Z'), validated: true }])
})

test('a call waits for the lock held by a worker of the previous version, and sees what it stored', async () => {
  const id = randomUUID()
  const locked = Promise.withResolvers<number>()
  const release = Promise.withResolvers<void>()
  // The previous version's store: the lock in the opened transaction, then its inserts,
  // here an error row of the same id, committed only once released.
  const holder = t.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ pid: number }>`
      select pg_backend_pid() as pid, pg_advisory_xact_lock(hashtextextended(current_schema() || '.bourse_events_store', 0))
    `.execute(trx)
    await sql`insert into event_errors (id, app_id, raw, reasons, received_at) values (${id}, ${appId}, '{}', '[]', now())`.execute(trx)
    locked.resolve(rows[0]!.pid)
    await release.promise
  })
  const holderPid = await locked.promise
  const call = store([eventRow(id)], [])
  try {
    for (let waited = 0; ; waited += 20) {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity where ${holderPid}::int = any (pg_blocking_pids(pid))
      `.execute(t.db)
      if (rows[0]!.n > 0) break
      if (waited > 10_000) throw new Error('the call never waited on the lock')
      await sleep(20)
    }
  } finally {
    release.resolve()
    await holder
  }
  assert.deepEqual(await call, [0, 0])
  assert.deepEqual(await placeOf([id]), ['event_errors'])
})

test('migration 0013 goes down (the function dropped) and up again', async () => {
  const installed = async () =>
    (
      await sql<{ n: number }>`
        select count(*)::int as n from pg_proc p join pg_namespace s on s.oid = p.pronamespace
        where s.nspname = ${t.schema} and p.proname = 'bourse_store_events'
      `.execute(t.db)
    ).rows[0]!.n
  await storeInOneCall.down(t.db as never)
  assert.equal(await installed(), 0)
  await storeInOneCall.up(t.db as never)
  assert.equal(await installed(), 1)
  const id = randomUUID()
  assert.deepEqual(await store([], [errorRow(id)]), [0, 1])
})
