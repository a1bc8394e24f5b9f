/**
 * The outbox queries against the real PostgreSQL, on scratch outbox tables (one schema for
 * this file): claims under a lease, results, retries and dead letters, replay, NOTIFY.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { sql } from 'kysely'
import pg from 'pg'
import {
  claimDue,
  markAllDelivered,
  markFailed,
  nextDueAt,
  notifyOutbox,
  type OutboxTable,
  releaseClaims,
  replayDead,
} from '../../../src/platform/outbox/outbox.repository.ts'
import type { TestSchema } from '../../helpers/db.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'
import {
  insertRow,
  openScratchOutbox,
  readRow,
  type ScratchRow,
  type ScratchTables,
  scratchOutbox,
  scratchUuidOutbox,
} from './scratch-outbox.ts'

let t: TestSchema<ScratchTables>
let outbox: OutboxTable

before(async () => {
  t = await openScratchOutbox()
  outbox = scratchOutbox(t.schema)
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('scratch_outbox').execute()
  await t.db.deleteFrom('scratch_outbox_uuid').execute()
})

const row = (id: string) => readRow(t.db, outbox, id)
const claim = (limit: number, leaseMs = 60_000) => claimDue<ScratchRow>(t.db, outbox, { limit, leaseMs })
const ids = (rows: ReadonlyArray<{ id: string }>) => rows.map((r) => r.id).sort()

/** Records notifications on `channel` until `close`. */
async function listenTo(channel: string) {
  const client = new pg.Client({ connectionString: testConfig().DATABASE_URL })
  await client.connect()
  const received: string[] = []
  client.on('notification', (n) => received.push(n.channel))
  await client.query(`LISTEN ${client.escapeIdentifier(channel)}`)
  return { received, close: () => client.end() }
}

test('claim: due pending rows, leased, with every column; a lease keeps them from others until it ends', async () => {
  const a = await insertRow(t.db, outbox)
  const b = await insertRow(t.db, outbox)
  await insertRow(t.db, outbox, { dueInMs: 3_600_000 })
  await insertRow(t.db, outbox, { status: 'dead' })
  const delivered = await insertRow(t.db, outbox)
  await markAllDelivered(t.db, outbox, [{ id: delivered.id, status: 200 }])

  const claimed = await claim(10)
  assert.deepEqual(ids(claimed), [a.id, b.id].sort())
  const claimedB = claimed.find((r) => r.id === b.id)!
  assert.equal(claimedB.payload, b.payload)
  assert.equal(claimedB.status, 'pending')
  assert.equal(claimedB.attempts, 0)
  assert.ok(claimedB.created_at instanceof Date)
  assert.ok(claimedB.lease_until && claimedB.lease_until.getTime() > Date.now() + 50_000, 'leased for about a minute')
  assert.equal(claimedB.next_attempt_at.getTime(), claimedB.lease_until.getTime(), 'due again when the lease ends')
  assert.deepEqual(await claim(10), [], 'leased rows are not claimed twice')

  // The lease runs out (a sender that died): the row is due again, for any sender.
  await t.db
    .updateTable('scratch_outbox')
    .set({ lease_until: sql`now() - interval '1 second'`, next_attempt_at: sql`now() - interval '1 second'` })
    .where('id', '=', a.id)
    .execute()
  assert.deepEqual(ids(await claim(10)), [a.id])
})

test('claim: a short lease runs out by itself and the row is claimed again', async () => {
  const { id } = await insertRow(t.db, outbox)
  assert.deepEqual(ids(await claim(1, 200)), [id])
  assert.deepEqual(await claim(1, 200), [])
  const due = await nextDueAt(t.db, outbox)
  assert.ok(due)
  await waitFor(async () => (await claim(1, 60_000)).length === 1, { what: 'the row due again', intervalMs: 20 })
  assert.ok(Date.now() >= due.getTime() - 50, 'not before the lease ended')
})

test('claim: extra columns come in the same statement, naming the row by its table', async () => {
  const { id, payload } = await insertRow(t.db, outbox)
  const [claimed] = await claimDue<ScratchRow & { shout: string; size: number }>(t.db, outbox, {
    limit: 1,
    leaseMs: 1000,
    extraReturning: sql`upper(scratch_outbox.payload) as shout, length(scratch_outbox.payload) as size`,
  })
  assert.equal(claimed?.id, id)
  assert.equal(claimed.shout, payload.toUpperCase())
  assert.equal(claimed.size, payload.length)
})

test('claim: the limit is respected, oldest due first, and concurrent claimers get disjoint rows', async () => {
  const all: string[] = []
  for (let i = 0; i < 20; i++) all.push((await insertRow(t.db, outbox, { dueInMs: -(20 - i) * 60_000 })).id)
  assert.deepEqual(ids(await claim(3)), all.slice(0, 3).sort())
  const claimers = await Promise.all(Array.from({ length: 4 }, () => claim(5)))
  const both = claimers.flat().map((r) => r.id)
  assert.equal(new Set(both).size, both.length, 'no row claimed twice')
  assert.deepEqual(both.sort(), all.slice(3).sort())
  assert.deepEqual(await claim(0), [])
})

test('releaseClaims makes claimed rows due again at once; delivered rows are left alone', async () => {
  const { id } = await insertRow(t.db, outbox)
  const done = await insertRow(t.db, outbox)
  await claim(2)
  await markAllDelivered(t.db, outbox, [{ id: done.id, status: 200 }])
  assert.equal(await releaseClaims(t.db, outbox, [id, done.id]), 1)
  assert.equal((await row(id)).lease_until, null)
  assert.equal((await row(done.id)).status, 'delivered')
  assert.deepEqual(ids(await claim(1)), [id])
  assert.equal(await releaseClaims(t.db, outbox, []), 0)
})

test('markAllDelivered records each result once, in one statement; a late result cannot reopen a delivered row', async () => {
  const a = await insertRow(t.db, outbox)
  const b = await insertRow(t.db, outbox)
  await claim(2)
  assert.deepEqual(
    await markAllDelivered(t.db, outbox, [
      { id: a.id, status: 204 },
      { id: b.id, status: 200 },
    ]),
    new Set([a.id, b.id]),
  )
  const delivered = await row(a.id)
  assert.equal(delivered.status, 'delivered')
  assert.equal(delivered.attempts, 1)
  assert.equal(delivered.last_status, 204)
  assert.equal(delivered.lease_until, null)
  assert.ok(delivered.delivered_at instanceof Date)
  assert.equal((await row(b.id)).last_status, 200)

  // A sender whose lease ran out reports late: neither a success nor a failure changes the row.
  assert.deepEqual(await markAllDelivered(t.db, outbox, [{ id: a.id, status: 200 }]), new Set())
  assert.equal(await markFailed(t.db, outbox, a.id, { error: 'late', status: 500, nextAttemptAt: new Date() }), undefined)
  assert.equal(await markFailed(t.db, outbox, a.id, { error: 'late', nextAttemptAt: new Date(), permanent: true }), undefined)
  const after = await row(a.id)
  assert.equal(after.status, 'delivered')
  assert.equal(after.attempts, 1)
  assert.equal(after.last_error, null)
  assert.deepEqual(await markAllDelivered(t.db, outbox, []), new Set())
})

test('markFailed schedules a retry until the next attempt would fall after expires_at: then a dead letter', async () => {
  const { id } = await insertRow(t.db, outbox, { retryForMs: 60_000 })
  const soon = new Date(Date.now() + 10_000)
  assert.equal(await markFailed(t.db, outbox, id, { error: 'HTTP 500', status: 500, nextAttemptAt: soon }), 'pending')
  let r = await row(id)
  assert.equal(r.attempts, 1)
  assert.equal(r.next_attempt_at.getTime(), soon.getTime())
  assert.equal(r.last_error, 'HTTP 500')
  assert.equal(r.last_status, 500)
  assert.equal(r.lease_until, null)
  assert.equal((await nextDueAt(t.db, outbox))?.getTime(), soon.getTime())

  const tooLate = new Date(Date.now() + 120_000)
  assert.equal(await markFailed(t.db, outbox, id, { error: 'x'.repeat(5000), nextAttemptAt: tooLate }), 'dead')
  r = await row(id)
  assert.equal(r.status, 'dead')
  assert.equal(r.attempts, 2)
  assert.equal(r.last_status, null)
  assert.equal(r.last_error?.length, 1000, 'long errors are truncated')
  assert.equal(await nextDueAt(t.db, outbox), undefined, 'dead letters are never due')
  assert.equal(await markFailed(t.db, outbox, id, { error: 'again', nextAttemptAt: soon }), undefined, 'dead stays dead')
})

test('markFailed: a permanent failure is a dead letter at once, however long the row could be retried', async () => {
  const { id } = await insertRow(t.db, outbox, { retryForMs: 86_400_000 })
  const next = new Date(Date.now() + 1000)
  assert.equal(await markFailed(t.db, outbox, id, { error: 'no such mailbox', status: 550, nextAttemptAt: next, permanent: true }), 'dead')
  const r = await row(id)
  assert.equal(r.status, 'dead')
  assert.equal(r.attempts, 1)
  assert.equal(r.last_status, 550)
  assert.equal(r.last_error, 'no such mailbox')
})

test('nextDueAt: the earliest pending attempt, or the end of its lease if later', async () => {
  assert.equal(await nextDueAt(t.db, outbox), undefined)
  const { id } = await insertRow(t.db, outbox)
  const created = await row(id)
  assert.equal((await nextDueAt(t.db, outbox))?.getTime(), created.next_attempt_at.getTime())
  const [claimed] = await claim(1, 30_000)
  assert.equal((await nextDueAt(t.db, outbox))?.getTime(), claimed?.lease_until?.getTime())
})

test('notifyOutbox: the notification comes when the transaction commits, never after a rollback', async () => {
  const listener = await listenTo(outbox.channel)
  try {
    await assert.rejects(
      t.db.transaction().execute(async (trx) => {
        await notifyOutbox(trx, outbox)
        throw new Error('rolled back')
      }),
      /rolled back/,
    )
    await t.db.transaction().execute(async (trx) => {
      await notifyOutbox(trx, outbox)
      // Not before the commit: a sender woken now would find nothing to claim.
      await sql`select pg_sleep(0.05)`.execute(trx)
      assert.deepEqual(listener.received, [])
    })
    // A sentinel after both: once it is in, so is everything sent before it (a notification
    // of the rolled back transaction would have come first).
    await notifyOutbox(t.db, outbox)
    await waitFor(() => listener.received.length >= 2, { what: 'the notifications' })
    assert.deepEqual(listener.received, [outbox.channel, outbox.channel])
  } finally {
    await listener.close()
  }
})

test('replayDead: back to pending and due now, attempts kept, senders notified; only dead letters matching `where`', async () => {
  const listener = await listenTo(outbox.channel)
  try {
    const { id } = await insertRow(t.db, outbox, { retryForMs: 0, payload: 'mine' })
    assert.equal(await markFailed(t.db, outbox, id, { error: 'HTTP 500', status: 500, nextAttemptAt: new Date(Date.now() + 1000) }), 'dead')
    const pending = await insertRow(t.db, outbox)
    assert.equal(await replayDead(t.db, outbox, pending.id, { retryForMs: 60_000 }), undefined, 'not a dead letter')
    assert.equal(await replayDead(t.db, outbox, 'msg_nothing', { retryForMs: 60_000 }), undefined, 'no such row')
    assert.equal(
      await replayDead(t.db, outbox, id, { retryForMs: 60_000, where: sql<boolean>`payload = ${'theirs'}` }),
      undefined,
      'not matching where',
    )
    assert.equal((await row(id)).status, 'dead')

    const replayed = await replayDead<ScratchRow>(t.db, outbox, id, { retryForMs: 60_000, where: sql<boolean>`payload = ${'mine'}` })
    assert.ok(replayed)
    assert.equal(replayed.id, id)
    assert.equal(replayed.payload, 'mine')
    assert.equal(replayed.status, 'pending')
    assert.equal(replayed.attempts, 1)
    assert.equal(replayed.lease_until, null)
    assert.ok(replayed.expires_at.getTime() > Date.now() + 50_000)
    // A sentinel after it: once it is in, so is every notification sent before it, and the
    // refused replays sent none.
    await notifyOutbox(t.db, outbox)
    await waitFor(() => listener.received.length >= 2, { what: 'the notifications' })
    assert.equal(listener.received.length, 2)
    assert.deepEqual(ids(await claim(10, 1000)), [id, pending.id].sort())
    assert.equal(await replayDead(t.db, outbox, id, { retryForMs: 60_000 }), undefined, 'no longer dead')
  } finally {
    await listener.close()
  }
})

test('an outbox with uuid ids: claim, release, results and replay', async () => {
  const uuids = scratchUuidOutbox(t.schema)
  const a = await insertRow(t.db, uuids)
  const b = await insertRow(t.db, uuids)
  const c = await insertRow(t.db, uuids)
  assert.deepEqual(ids(await claimDue(t.db, uuids, { limit: 10, leaseMs: 60_000 })), [a.id, b.id, c.id].sort())
  assert.equal(await releaseClaims(t.db, uuids, [c.id]), 1)
  assert.deepEqual(await markAllDelivered(t.db, uuids, [{ id: a.id, status: 250 }]), new Set([a.id]))
  assert.equal(await markFailed(t.db, uuids, b.id, { error: 'bounced', nextAttemptAt: new Date(), permanent: true }), 'dead')
  assert.equal((await replayDead(t.db, uuids, b.id, { retryForMs: 1000 }))?.id, b.id)
  assert.equal((await readRow(t.db, uuids, a.id)).status, 'delivered')
  assert.equal((await readRow(t.db, uuids, b.id)).status, 'pending')
  assert.deepEqual(ids(await claimDue(t.db, uuids, { limit: 10, leaseMs: 60_000 })), [b.id, c.id].sort())
})

test('an idType that is not text, uuid or bigint is refused before any SQL is built', async () => {
  const bad = { ...outbox, idType: 'text[]; drop table scratch_outbox' } as unknown as OutboxTable
  await assert.rejects(releaseClaims(t.db, bad, ['x']), /idType must be text, uuid or bigint/)
})
