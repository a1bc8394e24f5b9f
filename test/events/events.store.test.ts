/**
 * How a judged batch is stored: by COPY when none of its ids is stored yet, by
 * `bourse_store_events` when one is (a replay) or PostgreSQL refuses the COPY, with the
 * same rows either way.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { sql } from 'kysely'
import { createApp } from '../../src/events/apps.repository.ts'
import { type Classified, copyLines, type ErrorRecord, type EventRecord, storeByCall, storeByCopy, storeRecords } from '../../src/events/events.store.ts'
import { withConnection } from '../../src/platform/db/index.ts'
import { isPermanent } from '../../src/platform/retry.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { waitFor } from '../helpers/infra.ts'

let testDb: TestDb
let appId: string
before(async () => {
  testDb = await openTestDb()
  appId = (await createApp(testDb.db, `store-${randomUUID()}`)).id
})
after(async () => {
  await testDb.close()
})

const event = (extra: Partial<EventRecord> = {}): EventRecord => ({
  id: randomUUID(),
  app_id: appId,
  session_id: 'session-1',
  category: 'page interaction',
  name: 'pageview',
  data: { host: 'www.example.com', path: '/' },
  occurred_at: '2026-12-08T01:00:00.123Z',
  received_at: '2026-12-08T01:00:01.000Z',
  validated: true,
  ...extra,
})
const error = (extra: Partial<ErrorRecord> = {}): ErrorRecord => ({
  id: randomUUID(),
  app_id: appId,
  session_id: null,
  category: 'page interaction',
  name: null,
  raw: { category: 'page interaction' },
  reasons: [{ field: '/name', message: 'is required' }],
  received_at: '2026-12-08T01:00:01.000Z',
  ...extra,
})
/** A batch as the worker judges it. */
const batch = (events: EventRecord[], errors: ErrorRecord[] = []): Classified => ({
  count: events.length + errors.length,
  ids: [...events, ...errors].map((r) => r.id),
  events,
  eventsCopy: copyLines(events),
  errors: JSON.stringify(errors),
})
const storedEvents = async (ids: string[]) =>
  testDb.db.selectFrom('events').select(['id', 'session_id', 'category', 'name', 'data', 'occurred_at', 'validated']).where('id', 'in', ids).orderBy('id').execute()
const storedErrors = async (ids: string[]) => testDb.db.selectFrom('event_errors').select('id').where('id', 'in', ids).execute()

describe('a batch of new ids', () => {
  it('is copied into events, its errors inserted, in one transaction: text with tabs, newlines and backslashes kept as sent', async () => {
    const odd = event({
      session_id: 'a\tb\nc\\d\re',
      name: 'name with \\N and \\. inside',
      data: { quote: '"', backslash: '\\', newline: '\n', tab: '\t', unicode: 'é ✓ \u2028', nested: { list: [1, 2.5, null, true] } },
    })
    const plain = event({ validated: false })
    const invalid = error()
    const result = await storeByCopy(testDb.db, batch([odd, plain], [invalid]))
    assert.deepEqual(result, { stored: 2, rejected: 1 })
    const rows = await storedEvents([odd.id, plain.id])
    const byId = new Map(rows.map((r) => [r.id, r]))
    assert.deepEqual(byId.get(odd.id), {
      id: odd.id,
      session_id: odd.session_id,
      category: odd.category,
      name: odd.name,
      data: odd.data,
      occurred_at: new Date(odd.occurred_at),
      validated: true,
    })
    assert.equal(byId.get(plain.id)?.validated, false)
    assert.deepEqual(await storedErrors([invalid.id]), [{ id: invalid.id }])
  })
})

describe('COPY and the call', () => {
  it('store the same rows as the same values, every column read back', async () => {
    const fields = {
      session_id: 'tab\there, newline\nthere, \\N, \\., \r, é ✓ \u2028',
      category: 'c\\d',
      name: '\\',
      data: { text: 'a\tb\nc\\d"e', list: [1, 2.5, null, true, { deep: ['x'] }], big: 1234567890.125, tiny: 1e-300, unicode: '✓ \u2028 \u{1F600}' },
      occurred_at: '2021-01-01T09:15:27.000001Z',
      received_at: '2026-12-08T01:00:01.123Z',
      validated: false,
    }
    const copied = event(fields)
    const called = event(fields)
    assert.deepEqual(await storeByCopy(testDb.db, batch([copied])), { stored: 1, rejected: 0 })
    assert.deepEqual(await storeByCall(testDb.db, batch([called])), { stored: 1, rejected: 0 })
    const rows = await testDb.db.selectFrom('events').selectAll().where('id', 'in', [copied.id, called.id]).execute()
    const { id: _a, stored_at: _b, ...viaCopy } = rows.find((r) => r.id === copied.id)!
    const { id: _c, stored_at: _d, ...viaCall } = rows.find((r) => r.id === called.id)!
    assert.deepEqual(viaCopy, viaCall)
    assert.equal(viaCopy.session_id, fields.session_id)
  })

  it('an unpaired surrogate in a text field is not copied (it would become U+FFFD): the call refuses the batch as before', async () => {
    const lone = event({ name: 'a\ud800b' })
    const judged = batch([event(), lone])
    assert.equal(judged.eventsCopy, undefined)
    assert.equal(await storeByCopy(testDb.db, judged), undefined)
    await assert.rejects(storeRecords(testDb.db, judged), (err) => isPermanent(err))
    assert.deepEqual(await storedEvents(judged.ids), [])
  })

  it('a connection lost while waiting for the lock is an error to retry, not a refusal: nothing written, the lock free again', async () => {
    const judged = batch([event()])
    await withConnection(testDb.db, async (holder) => {
      await holder.query("begin; select pg_advisory_xact_lock(hashtextextended(current_schema() || '.bourse_events_store', 0))")
      const holderPid = Number((await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
      const storing = storeByCopy(testDb.db, judged)
      storing.catch(() => {})
      // Another connection asks: inside the holder's transaction the activity view stays as it first read it.
      const waiting = await waitFor(async () => {
        const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where ${holderPid} = any(pg_blocking_pids(pid))`.execute(testDb.db)
        return rows[0]?.pid
      }, { what: 'the store waiting on the lock' })
      const killer = await withConnection(testDb.db, (other) => other.query('select pg_terminate_backend($1)', [waiting]))
      assert.equal(killer.rowCount, 1)
      await assert.rejects(storing, (err) => !isPermanent(err))
      await holder.query('rollback')
    })
    assert.deepEqual(await storedEvents(judged.ids), [])
    assert.deepEqual(await storeRecords(testDb.db, judged), { stored: 1, rejected: 0 }, 'the retry stores it')
  })
})

describe('a batch meeting a stored id (a replay)', () => {
  it('is not copied: nothing of it is written, and the call stores the rest once', async () => {
    const stored = event()
    assert.deepEqual(await storeRecords(testDb.db, batch([stored])), { stored: 1, rejected: 0 })
    const fresh = event()
    const freshError = error()
    const replay = batch([stored, fresh], [freshError])
    assert.equal(await storeByCopy(testDb.db, replay), undefined, 'the unique index refuses the copy')
    assert.deepEqual(await storedEvents([fresh.id]), [], 'rolled back whole')
    assert.deepEqual(await storedErrors([freshError.id]), [])
    assert.deepEqual(await storeRecords(testDb.db, replay), { stored: 1, rejected: 1 })
    assert.equal((await storedEvents([stored.id, fresh.id])).length, 2)
  })

  it('an id judged valid now but stored as an error before stays an error, and is not copied into events', async () => {
    const first = error()
    assert.deepEqual(await storeRecords(testDb.db, batch([], [first])), { stored: 0, rejected: 1 })
    const again = event({ id: first.id })
    const other = event()
    assert.equal(await storeByCopy(testDb.db, batch([again, other])), undefined)
    assert.deepEqual(await storeRecords(testDb.db, batch([again, other])), { stored: 1, rejected: 0 })
    assert.deepEqual(await storedEvents([first.id]), [])
    assert.deepEqual(await storedErrors([first.id]), [{ id: first.id }])
    assert.equal((await storedEvents([other.id])).length, 1)
  })

  it('an id judged invalid now but stored as an event before stays an event', async () => {
    const valid = event()
    await storeRecords(testDb.db, batch([valid]))
    const nowInvalid = error({ id: valid.id })
    assert.deepEqual(await storeRecords(testDb.db, batch([], [nowInvalid])), { stored: 0, rejected: 0 })
    assert.deepEqual(await storedErrors([valid.id]), [])
  })
})

describe('a batch PostgreSQL refuses', () => {
  it('an unknown app: the copy gives way, and the call refuses it as before (23503), nothing written', async () => {
    const orphan = event({ app_id: randomUUID() })
    const judged = batch([event(), orphan])
    assert.equal(await storeByCopy(testDb.db, judged), undefined)
    await assert.rejects(storeByCall(testDb.db, judged), (err: { code?: string }) => err.code === '23503')
    assert.deepEqual(await storedEvents(judged.ids), [])
  })

  it('leaves the pool usable: a store after a refused copy works', async () => {
    for (let i = 0; i < 6; i++) assert.equal(await storeByCopy(testDb.db, batch([event({ app_id: randomUUID() })])), undefined)
    assert.deepEqual(await storeByCopy(testDb.db, batch([event()])), { stored: 1, rejected: 0 })
  })
})
