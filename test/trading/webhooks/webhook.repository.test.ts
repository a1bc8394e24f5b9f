/**
 * What the trading domain adds to the platform's outbox, against the real PostgreSQL (one
 * schema for this file): the signing secret claimed with each delivery, and dead letters
 * listed and replayed per user. The outbox queries themselves are tested in
 * test/platform/outbox/.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { sql } from 'kysely'
import pg from 'pg'
import { notifyChannel } from '../../../src/platform/db/index.ts'
import { InvalidCursorError } from '../../../src/platform/db/keyset.ts'
import { claimDue, markFailed, type OutboxTable } from '../../../src/platform/outbox/outbox.repository.ts'
import {
  type ClaimedDelivery,
  listDeadLetters,
  replayDeadLetter,
  webhookOutbox,
  webhookSecretReturning,
} from '../../../src/trading/webhooks/webhook.repository.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'
import { insertDelivery, insertUser } from './webhook-fixtures.ts'

let t: TestDb
let outbox: OutboxTable
const url = 'https://example.com/cb'

before(async () => {
  t = await openTestDb()
  outbox = webhookOutbox(t.schema)
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('users').execute()
  await insertUser(t.db, 'u1')
  await insertUser(t.db, 'u2')
})

/** What the callback sender claims: deliveries with their user's signing secret, in one statement. */
const claimDeliveries = (limit: number, leaseMs: number) =>
  claimDue<ClaimedDelivery>(t.db, outbox, { limit, leaseMs, extraReturning: webhookSecretReturning })

test('the callback outbox is webhook_deliveries, woken on the schema\'s webhooks channel (the one bourse_finish_orders notifies)', () => {
  assert.deepEqual(webhookOutbox(t.schema), { table: 'webhook_deliveries', channel: notifyChannel('webhooks', t.schema) })
})

test('a claim brings each delivery with its user\'s signing secret', async () => {
  const a = await insertDelivery(t.db, { userId: 'u1', url })
  const b = await insertDelivery(t.db, { userId: 'u2', url })
  const claimed = await claimDeliveries(10, 60_000)
  assert.deepEqual(claimed.map((d) => d.id).sort(), [a.id, b.id].sort())
  for (const [user, id, payload] of [['u1', a.id, a.payload], ['u2', b.id, b.payload]] as const) {
    const secret = await t.db.selectFrom('users').select('webhook_secret').where('id', '=', user).executeTakeFirstOrThrow()
    const delivery = claimed.find((d) => d.id === id)!
    assert.equal(delivery.webhook_secret, secret.webhook_secret)
    assert.equal(delivery.payload, payload)
    assert.equal(delivery.user_id, user)
    assert.ok(delivery.lease_until instanceof Date)
  }
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
    assert.equal(await markFailed(t.db, outbox, id, { error: 'HTTP 500', status: 500, nextAttemptAt: new Date(Date.now() + 1000) }), 'dead')
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
      (await claimDeliveries(10, 1000)).map((d) => d.id).sort(),
      [id, pending.id].sort(),
    )
    assert.equal(await replayDeadLetter(t.db, id, { retryForMs: 60_000, schema: t.schema }), undefined, 'no longer dead')
  } finally {
    await listener.end()
  }
})
