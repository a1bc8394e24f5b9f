/** The callback outbox queries, against the real PostgreSQL (one schema for this file). */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { sql } from 'kysely'
import pg from 'pg'
import { notifyChannel } from '../../../src/platform/db/index.ts'
import { InvalidCursorError } from '../../../src/platform/db/keyset.ts'
import {
  claimDueDeliveries,
  listDeadLetters,
  markDelivered,
  markFailed,
  nextDueAt,
  releaseClaims,
  replayDeadLetter,
} from '../../../src/trading/webhooks/webhook.repository.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'
import { insertDelivery, insertUser } from './webhook-fixtures.ts'

let t: TestDb
const url = 'https://example.com/cb'

before(async () => {
  t = await openTestDb()
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('users').execute()
  await insertUser(t.db, 'u1')
  await insertUser(t.db, 'u2')
})

const row = (id: string) => t.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow()

test('claim: due pending deliveries, leased, with the signing secret; a lease keeps them from others', async () => {
  const a = await insertDelivery(t.db, { userId: 'u1', url })
  const b = await insertDelivery(t.db, { userId: 'u2', url })
  const later = await insertDelivery(t.db, { userId: 'u1', url })
  await t.db.updateTable('webhook_deliveries').set({ next_attempt_at: sql`now() + interval '1 hour'` }).where('id', '=', later.id).execute()
  const delivered = await insertDelivery(t.db, { userId: 'u1', url })
  await markDelivered(t.db, delivered.id, 200)

  const claimed = await claimDueDeliveries(t.db, { limit: 10, leaseMs: 60_000 })
  assert.deepEqual(claimed.map((d) => d.id).sort(), [a.id, b.id].sort())
  const secret = await t.db.selectFrom('users').select('webhook_secret').where('id', '=', 'u2').executeTakeFirstOrThrow()
  const claimedB = claimed.find((d) => d.id === b.id)!
  assert.equal(claimedB.webhook_secret, secret.webhook_secret)
  assert.equal(claimedB.payload, b.payload)
  assert.ok(claimedB.lease_until && claimedB.lease_until.getTime() > Date.now() + 50_000, 'leased for about a minute')
  assert.deepEqual(await claimDueDeliveries(t.db, { limit: 10, leaseMs: 60_000 }), [], 'leased rows are not claimed twice')

  // An expired lease (a sender that died) makes the delivery claimable again. The claim
  // moved next_attempt_at to the lease end too, so the test moves both back.
  assert.equal(claimedB.next_attempt_at.getTime(), claimedB.lease_until.getTime())
  await t.db
    .updateTable('webhook_deliveries')
    .set({ lease_until: sql`now() - interval '1 second'`, next_attempt_at: sql`now() - interval '1 second'` })
    .where('id', '=', a.id)
    .execute()
  assert.deepEqual((await claimDueDeliveries(t.db, { limit: 10, leaseMs: 60_000 })).map((d) => d.id), [a.id])
})

test('claim: the limit is respected, oldest due first, and concurrent claims never share a row', async () => {
  const ids: string[] = []
  for (let i = 0; i < 8; i++) {
    const { id } = await insertDelivery(t.db, { userId: 'u1', url })
    await t.db.updateTable('webhook_deliveries').set({ next_attempt_at: sql`now() - ${8 - i} * interval '1 minute'` }).where('id', '=', id).execute()
    ids.push(id)
  }
  const first = await claimDueDeliveries(t.db, { limit: 3, leaseMs: 60_000 })
  assert.deepEqual(first.map((d) => d.id).sort(), ids.slice(0, 3).sort())
  const [x, y] = await Promise.all([
    claimDueDeliveries(t.db, { limit: 3, leaseMs: 60_000 }),
    claimDueDeliveries(t.db, { limit: 3, leaseMs: 60_000 }),
  ])
  const both = [...x, ...y].map((d) => d.id)
  assert.equal(new Set(both).size, both.length, 'no delivery claimed twice')
  assert.deepEqual(both.sort(), ids.slice(3).sort())
  assert.deepEqual(await claimDueDeliveries(t.db, { limit: 0, leaseMs: 60_000 }), [])
})

test('releaseClaims makes claimed deliveries due again at once', async () => {
  const { id } = await insertDelivery(t.db, { userId: 'u1', url })
  await claimDueDeliveries(t.db, { limit: 1, leaseMs: 60_000 })
  assert.equal(await releaseClaims(t.db, [id]), 1)
  assert.equal((await row(id)).lease_until, null)
  assert.deepEqual((await claimDueDeliveries(t.db, { limit: 1, leaseMs: 60_000 })).map((d) => d.id), [id])
  assert.equal(await releaseClaims(t.db, []), 0)
})

test('markDelivered records the attempt once; a late result cannot reopen it', async () => {
  const { id } = await insertDelivery(t.db, { userId: 'u1', url })
  await claimDueDeliveries(t.db, { limit: 1, leaseMs: 60_000 })
  assert.equal(await markDelivered(t.db, id, 204), true)
  const delivered = await row(id)
  assert.equal(delivered.status, 'delivered')
  assert.equal(delivered.attempts, 1)
  assert.equal(delivered.last_status, 204)
  assert.equal(delivered.lease_until, null)
  assert.ok(delivered.delivered_at instanceof Date)
  assert.equal(await markDelivered(t.db, id, 200), false)
  assert.equal(await markFailed(t.db, id, { error: 'late', status: 500, nextAttemptAt: new Date() }), undefined)
  assert.equal((await row(id)).status, 'delivered')
  assert.equal((await row(id)).attempts, 1)
})

test('markFailed schedules a retry until the next attempt would fall after expires_at: then a dead letter', async () => {
  const { id } = await insertDelivery(t.db, { userId: 'u1', url, retryForMs: 60_000 })
  const soon = new Date(Date.now() + 10_000)
  assert.equal(await markFailed(t.db, id, { error: 'HTTP 500', status: 500, nextAttemptAt: soon }), 'pending')
  let r = await row(id)
  assert.equal(r.attempts, 1)
  assert.equal(r.next_attempt_at.getTime(), soon.getTime())
  assert.equal(r.last_error, 'HTTP 500')
  assert.equal(r.last_status, 500)
  assert.equal(await nextDueAt(t.db).then((d) => d?.getTime()), soon.getTime())

  const tooLate = new Date(Date.now() + 120_000)
  assert.equal(await markFailed(t.db, id, { error: 'x'.repeat(5000), nextAttemptAt: tooLate }), 'dead')
  r = await row(id)
  assert.equal(r.status, 'dead')
  assert.equal(r.attempts, 2)
  assert.equal(r.last_status, null)
  assert.equal(r.last_error?.length, 1000, 'long errors are truncated')
  assert.equal(await nextDueAt(t.db), undefined, 'dead letters are never due')
})

test('nextDueAt: the earliest pending attempt, or the end of its lease if later', async () => {
  assert.equal(await nextDueAt(t.db), undefined)
  const { id } = await insertDelivery(t.db, { userId: 'u1', url })
  const created = await row(id)
  assert.equal((await nextDueAt(t.db))?.getTime(), created.next_attempt_at.getTime())
  const [claimed] = await claimDueDeliveries(t.db, { limit: 1, leaseMs: 30_000 })
  assert.equal((await nextDueAt(t.db))?.getTime(), claimed?.lease_until?.getTime())
})

test('dead letters: keyset pages newest first, per user, with rows sharing a timestamp', async () => {
  const ids: string[] = []
  for (let i = 0; i < 7; i++) {
    ids.push((await insertDelivery(t.db, { userId: i % 2 === 0 ? 'u1' : 'u2', url, status: 'dead' })).id)
  }
  await insertDelivery(t.db, { userId: 'u1', url })
  // Four share one microsecond, the others are apart by less than a millisecond.
  const base = '2025-06-01 12:00:00.000000+00'
  for (const [i, id] of ids.entries()) {
    const micros = i < 4 ? 500 : 500 + i * 7
    await t.db
      .updateTable('webhook_deliveries')
      .set({ created_at: sql`${base}::timestamptz + ${micros} * interval '1 microsecond'` })
      .where('id', '=', id)
      .execute()
  }
  const expected = await t.db
    .selectFrom('webhook_deliveries')
    .select('id')
    .where('status', '=', 'dead')
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute()

  const seen: string[] = []
  let cursor: string | undefined
  let pages = 0
  do {
    const page = await listDeadLetters(t.db, {}, { cursor, limit: 2 })
    seen.push(...page.items.map((d) => d.id))
    assert.ok(page.items.every((d) => d.status === 'dead' && !('created_us' in d)))
    cursor = page.next_cursor ?? undefined
    pages++
  } while (cursor !== undefined)
  assert.deepEqual(seen, expected.map((e) => e.id))
  assert.equal(pages, 4)

  const mine = await listDeadLetters(t.db, { userId: 'u2' }, { limit: 10 })
  assert.deepEqual(mine.items.map((d) => d.id).sort(), [ids[1], ids[3], ids[5]].sort())
  assert.equal(mine.next_cursor, null)

  for (const bad of ['nope', Buffer.from('["x","y"]').toString('base64url'), Buffer.from('{}').toString('base64url')]) {
    await assert.rejects(listDeadLetters(t.db, {}, { cursor: bad, limit: 2 }), InvalidCursorError)
  }
})

test('replayDeadLetter: back to pending and due now, attempts kept, senders notified; only dead letters', async () => {
  const listener = new pg.Client({ connectionString: testConfig().DATABASE_URL })
  await listener.connect()
  const notifications: string[] = []
  listener.on('notification', (n) => notifications.push(n.channel))
  await listener.query(`LISTEN ${listener.escapeIdentifier(notifyChannel('webhooks', t.schema))}`)
  try {
    const { id } = await insertDelivery(t.db, { userId: 'u1', url, retryForMs: 0 })
    assert.equal(await markFailed(t.db, id, { error: 'HTTP 500', status: 500, nextAttemptAt: new Date(Date.now() + 1000) }), 'dead')
    const pending = await insertDelivery(t.db, { userId: 'u1', url })
    assert.equal(await replayDeadLetter(t.db, pending.id, { retryForMs: 60_000, schema: t.schema }), undefined)
    assert.equal(await replayDeadLetter(t.db, id, { retryForMs: 60_000, schema: t.schema, userId: 'u2' }), undefined, 'not their letter')
    assert.equal(notifications.length, 0)

    const replayed = await replayDeadLetter(t.db, id, { retryForMs: 60_000, schema: t.schema, userId: 'u1' })
    assert.ok(replayed)
    assert.equal(replayed.status, 'pending')
    assert.equal(replayed.attempts, 1)
    assert.equal(replayed.lease_until, null)
    assert.ok(replayed.expires_at.getTime() > Date.now() + 50_000)
    await waitFor(() => notifications.length === 1, { what: 'the notification' })
    assert.deepEqual(notifications, [notifyChannel('webhooks', t.schema)])
    assert.deepEqual(
      (await claimDueDeliveries(t.db, { limit: 10, leaseMs: 1000 })).map((d) => d.id).sort(),
      [id, pending.id].sort(),
    )
    assert.equal(await replayDeadLetter(t.db, id, { retryForMs: 60_000, schema: t.schema }), undefined, 'no longer dead')
  } finally {
    await listener.end()
  }
})
