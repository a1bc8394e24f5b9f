/**
 * The outbox sender in-process, against the real PostgreSQL, on a scratch outbox table and
 * a `deliver` function the test steers: NOTIFY wake-ups, retries and dead letters, leases
 * that run out, a late result, concurrency, and handing back claims on close.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, test } from 'node:test'
import { sql } from 'kysely'
import pg from 'pg'
import { createLogger } from '../../../src/platform/logger.ts'
import {
  createOutboxSender,
  type OutboxAttempt,
  type OutboxSender,
  type OutboxSenderOptions,
  retryDelayMs,
} from '../../../src/platform/outbox/outbox-sender.ts'
import type { OutboxTable } from '../../../src/platform/outbox/outbox.repository.ts'
import { PermanentError } from '../../../src/platform/retry.ts'
import type { TestSchema } from '../../helpers/db.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'
import { insertRow, openScratchOutbox, readRow, type ScratchRow, type ScratchTables, scratchOutbox } from './scratch-outbox.ts'

let t: TestSchema<ScratchTables>
let outbox: OutboxTable
const log = createLogger({ level: 'silent' })
const databaseUrl = testConfig().DATABASE_URL
const running: Array<{ controller: AbortController; done: Promise<void> }> = []
/** Attempts `deliver` is holding, answered by {@link answerHeld}. */
let held: Array<{ row: ScratchRow; answer: (attempt: OutboxAttempt) => void }> = []

before(async () => {
  t = await openScratchOutbox()
  outbox = scratchOutbox(t.schema)
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('scratch_outbox').execute()
})
afterEach(async () => {
  for (const { controller, done } of running.splice(0)) {
    controller.abort()
    answerHeld({ ok: false, status: null, error: 'test over' })
    await done
  }
  held = []
})

/** Answers every held attempt with `attempt`. */
function answerHeld(attempt: OutboxAttempt): void {
  for (const entry of held.splice(0)) entry.answer(attempt)
}

/** A `deliver` that holds each attempt until the test answers it. */
function holding(row: ScratchRow): Promise<OutboxAttempt> {
  return new Promise((resolve) => held.push({ row, answer: resolve }))
}

type Options = Partial<OutboxSenderOptions<ScratchRow>>

/** Starts a sender; a long poll interval by default, so only notifications make it look quickly. */
function startSender(options: Options = {}): { sender: OutboxSender; stop: () => Promise<void> } {
  const sender = createOutboxSender<ScratchRow>(
    { db: t.db, log, listen: databaseUrl, outbox },
    {
      name: 'scratch-sender',
      concurrency: 8,
      leaseMs: 30_000,
      retryBaseMs: 20,
      retryMaxMs: 1000,
      pollMs: 60_000,
      deliver: async () => ({ ok: true, status: 200 }),
      ...options,
    },
  )
  const controller = new AbortController()
  const done = sender.run(controller.signal)
  const entry = { controller, done }
  running.push(entry)
  return {
    sender,
    stop: async () => {
      running.splice(running.indexOf(entry), 1)
      controller.abort()
      await done
    },
  }
}

const row = (id: string) => readRow(t.db, outbox, id)
const statusOf = async (id: string) => (await row(id)).status

test('retryDelayMs: exponential, capped, fully jittered', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n, 100, 3000, () => 1)), [100, 200, 400, 800, 1600, 3000, 3000])
  assert.equal(retryDelayMs(3, 100, 3000, () => 0), 0)
  assert.equal(retryDelayMs(3, 100, 3000, () => 0.5), 400)
  assert.equal(retryDelayMs(5000, 100, 3000, () => 1), 3000, 'no overflow after many attempts')
  for (let i = 0; i < 100; i++) {
    const d = retryDelayMs(2, 100, 3000)
    assert.ok(d >= 0 && d <= 400)
  }
})

test('options are checked when the sender is made', () => {
  const deps = { db: t.db, log, listen: databaseUrl, outbox }
  const base = { name: 'x', concurrency: 1, leaseMs: 1000, retryBaseMs: 10, retryMaxMs: 100, deliver: holding }
  assert.throws(() => createOutboxSender(deps, { ...base, concurrency: 0 }), /concurrency must be a whole number >= 1 \(got 0\)/)
  assert.throws(() => createOutboxSender(deps, { ...base, leaseMs: 1.5 }), /leaseMs must be a whole number/)
  assert.throws(() => createOutboxSender(deps, { ...base, pollMs: -1 }), /pollMs must be a whole number/)
  assert.throws(() => createOutboxSender(deps, { ...base, name: ' ' }), /name must be a non-empty string/)
  assert.throws(() => createOutboxSender({ ...deps, outbox: { ...outbox, channel: '' } }, base), /outbox\.channel must be/)
})

test('a sender wakes on NOTIFY: a new row is delivered and recorded long before the next poll', async () => {
  const delivered: Array<{ id: string; status: number }> = []
  const seen: ScratchRow[] = []
  const { sender } = startSender({
    deliver: async (r) => {
      seen.push(r)
      return { ok: true, status: 250 }
    },
    onDelivered: (r, status) => delivered.push({ id: r.id, status }),
  })
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  const { id, payload } = await insertRow(t.db, outbox, { notify: true })
  // The poll interval is a minute: only the notification can bring it this soon.
  await waitFor(() => delivered.length === 1, { what: 'the delivery', timeoutMs: 10_000, intervalMs: 5 })
  assert.deepEqual(delivered, [{ id, status: 250 }])
  assert.equal(seen[0]?.payload, payload, 'deliver gets the whole row')
  assert.equal(seen[0]?.attempts, 0)
  const r = await row(id)
  assert.equal(r.status, 'delivered', 'recorded before onDelivered')
  assert.equal(r.attempts, 1)
  assert.equal(r.last_status, 250)
  assert.equal(r.lease_until, null)
  assert.equal(sender.stats.claimed, 1)
  assert.equal(sender.stats.delivered, 1)
})

test('the LISTEN connection is named after the sender and listens on the outbox channel', async () => {
  const { sender } = startSender({ name: 'scratch-named' })
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  const { rows } = await sql<{ query: string }>`
    select query from pg_stat_activity where application_name = 'bourse-scratch-named'
  `.execute(t.db)
  assert.deepEqual(rows.map((r) => r.query), [`LISTEN "${outbox.channel}"`])
})

test('rows already waiting are delivered at start, without a notification', async () => {
  const a = await insertRow(t.db, outbox)
  const b = await insertRow(t.db, outbox)
  startSender()
  await waitFor(async () => (await statusOf(a.id)) === 'delivered' && (await statusOf(b.id)) === 'delivered', { what: 'both' })
})

test('a failed attempt is retried with backoff; past expires_at the row becomes a dead letter', async () => {
  const attempts: number[] = []
  const { sender } = startSender({
    random: () => 1,
    retryBaseMs: 50,
    deliver: async (r) => {
      attempts.push(r.attempts)
      return { ok: false, status: 503, error: 'busy' }
    },
  })
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  // Attempts after 0, 50, 150, 350 and 750 ms: the next would fall past the second.
  const { id } = await insertRow(t.db, outbox, { retryForMs: 1000, notify: true })
  await waitFor(async () => (await statusOf(id)) === 'dead', { what: 'a dead letter' })
  const dead = await row(id)
  assert.ok(dead.attempts >= 2, `attempts: ${dead.attempts}`)
  assert.deepEqual(attempts, Array.from({ length: dead.attempts }, (_, i) => i), 'each attempt sees the count so far')
  assert.equal(dead.last_error, 'busy')
  assert.equal(dead.last_status, 503)
  assert.equal(sender.stats.retried, dead.attempts - 1)
  assert.equal(sender.stats.deadLettered, 1)
  assert.equal(sender.stats.delivered, 0)
})

test('a permanent failure is a dead letter at once, whether answered or thrown as a PermanentError', async () => {
  const calls = new Map<string, number>()
  const { sender } = startSender({
    deliver: async (r) => {
      calls.set(r.payload, (calls.get(r.payload) ?? 0) + 1)
      if (r.payload === 'answered') return { ok: false, status: 550, error: 'no such mailbox', permanent: true }
      throw new PermanentError('malformed address')
    },
  })
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  const answered = await insertRow(t.db, outbox, { payload: 'answered', retryForMs: 86_400_000, notify: true })
  const thrown = await insertRow(t.db, outbox, { payload: 'thrown', retryForMs: 86_400_000, notify: true })
  await waitFor(async () => (await statusOf(answered.id)) === 'dead' && (await statusOf(thrown.id)) === 'dead', { what: 'dead letters' })
  assert.deepEqual(Object.fromEntries(calls), { answered: 1, thrown: 1 }, 'one attempt each')
  assert.equal((await row(answered.id)).last_status, 550)
  assert.equal((await row(thrown.id)).last_error, 'PermanentError: malformed address')
  assert.equal(sender.stats.deadLettered, 2)
  assert.equal(sender.stats.retried, 0)
})

test('any other throw from deliver is a failed attempt, retried', async () => {
  let calls = 0
  const { sender } = startSender({
    random: () => 0,
    deliver: async () => {
      if (++calls === 1) throw new TypeError('a bug')
      return { ok: true, status: 200 }
    },
  })
  const { id } = await insertRow(t.db, outbox, { notify: true })
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'delivered after a retry' })
  const r = await row(id)
  assert.equal(r.attempts, 2)
  assert.equal(sender.stats.retried, 1)
})

test('a lease that runs out lets another sender deliver; the late result cannot turn the delivered row back to pending', async () => {
  // Sender A holds its attempt past its lease (a hung attempt, or a sender that stalled).
  const a = startSender({ leaseMs: 300, deliver: holding })
  const { id } = await insertRow(t.db, outbox, { notify: true })
  await waitFor(() => held.length === 1, { what: 'the held attempt' })
  // Sender B claims it once the lease ends (it reads the lease end as the next due time).
  const b = startSender({ leaseMs: 30_000, pollMs: 5000 })
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: "B's delivery", timeoutMs: 10_000 })
  assert.equal(b.sender.stats.delivered, 1)
  // A's answer comes late, a failure: the row stays delivered, and A counts nothing.
  answerHeld({ ok: false, status: 500, error: 'late' })
  await a.stop()
  const r = await row(id)
  assert.equal(r.status, 'delivered')
  assert.equal(r.attempts, 1)
  assert.equal(r.last_error, null)
  assert.deepEqual([a.sender.stats.retried, a.sender.stats.deadLettered, a.sender.stats.delivered], [0, 0, 0])
})

test('no more than `concurrency` attempts at once, and only those rows are claimed', async () => {
  const { sender } = startSender({ concurrency: 3, deliver: holding })
  for (let i = 0; i < 10; i++) await insertRow(t.db, outbox, { notify: true })
  await waitFor(() => held.length === 3, { what: 'three held attempts' })
  assert.equal(sender.stats.inFlight, 3)
  const leased = await t.db.selectFrom('scratch_outbox').select('id').where('lease_until', 'is not', null).execute()
  assert.equal(leased.length, 3, 'only what is in flight is claimed')
  // Answer in rounds: each freed slot takes the next row.
  await waitFor(
    async () => {
      answerHeld({ ok: true, status: 200 })
      return (await t.db.selectFrom('scratch_outbox').select('id').where('status', '=', 'delivered').execute()).length === 10
    },
    { what: 'ten deliveries' },
  )
  assert.equal(sender.stats.delivered, 10)
})

test('stopping waits for the attempts in flight and records them', async () => {
  const { stop } = startSender({ deliver: holding })
  const { id } = await insertRow(t.db, outbox, { notify: true })
  await waitFor(() => held.length === 1, { what: 'the held attempt' })
  let stopped = false
  const stopping = stop().then(() => {
    stopped = true
  })
  // A round trip to PostgreSQL: time for a sender that did not wait to resolve.
  await sql`select 1`.execute(t.db)
  assert.equal(stopped, false, 'still waiting for the attempt')
  answerHeld({ ok: true, status: 200 })
  await stopping
  assert.equal(await statusOf(id), 'delivered', 'recorded before run() resolved')
  const later = await insertRow(t.db, outbox, { notify: true })
  assert.equal((await row(later.id)).lease_until, null, 'a stopped sender claims nothing')
})

test('closing while a claim is under way hands the claimed rows back, unstarted', async () => {
  const ids = [(await insertRow(t.db, outbox)).id, (await insertRow(t.db, outbox)).id]
  // A lock that conflicts with the claim's UPDATE holds the sender's first claim.
  const locker = new pg.Client({ connectionString: databaseUrl })
  await locker.connect()
  try {
    await locker.query('begin')
    await locker.query(`lock table ${locker.escapeIdentifier(t.schema)}.scratch_outbox in share mode`)
    const { sender, stop } = startSender({ name: 'scratch-blocked', deliver: holding })
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where wait_event_type = 'Lock' and query like '%update%scratch_outbox%lease_until%'
        `.execute(t.db)
        return rows[0]!.n > 0
      },
      { what: 'the claim waiting for the lock' },
    )
    const stopping = stop()
    await locker.query('commit')
    await stopping
    assert.equal(held.length, 0, 'nothing was started')
    assert.equal(sender.stats.claimed, 0)
    for (const id of ids) {
      const r = await row(id)
      assert.equal(r.status, 'pending')
      assert.equal(r.lease_until, null, 'the claim was handed back')
      assert.ok(r.next_attempt_at.getTime() <= Date.now() + 1000, 'due now, not at the end of a lease')
    }
  } finally {
    await locker.end()
  }
})

test('a sender stopped while its LISTEN client still connects stops', { timeout: 30_000 }, async () => {
  // Stopped in the same turn as it started: the client is ended before its socket is open,
  // where pg's connect() never settles. Twenty times, each a new sender.
  for (let i = 0; i < 20; i++) {
    const { sender, stop } = startSender({ name: `scratch-quick-${i}` })
    await stop()
    assert.equal(sender.stats.listening, false)
  }
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity where application_name like 'bourse-scratch-quick-%'
  `.execute(t.db)
  assert.equal(rows[0]!.n, 0, 'no LISTEN connection is left open')
})

test('a lost LISTEN connection is reopened and notifications work again', async () => {
  const { sender } = startSender({ name: 'scratch-reconnect' })
  const listenPid = async () => {
    const { rows } = await sql<{ pid: number }>`
      select pid from pg_stat_activity where application_name = 'bourse-scratch-reconnect'
    `.execute(t.db)
    return sender.stats.listening ? rows[0]?.pid : undefined
  }
  const first = await waitFor(listenPid, { what: 'the LISTEN connection' })
  await sql`select pg_terminate_backend(${first})`.execute(t.db)
  await waitFor(
    async () => {
      const pid = await listenPid()
      return pid !== undefined && pid !== first
    },
    { what: 'a new LISTEN connection' },
  )
  const { id } = await insertRow(t.db, outbox, { notify: true })
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'delivery after reconnecting', timeoutMs: 10_000 })
})
