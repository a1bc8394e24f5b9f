/**
 * The callback sender in-process, against the real PostgreSQL and a local receiver:
 * notification latency, signatures, retries and backoff, dead letters and replay, the SSRF
 * guard, concurrency, shutdown and a lost LISTEN connection.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, test } from 'node:test'
import { sql } from 'kysely'
import { Webhook } from 'standardwebhooks'
import { createLogger } from '../../../src/platform/logger.ts'
import {
  type CallbackSender,
  type CallbackSenderOptions,
  createCallbackSender,
} from '../../../src/trading/webhooks/callback-sender.service.ts'
import { replayDeadLetter } from '../../../src/trading/webhooks/webhook.repository.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'
import { insertDelivery, insertUser, type Receiver, startReceiver, webhookHeadersOf } from './webhook-fixtures.ts'

let t: TestDb
let receiver: Receiver
let secret: string
const log = createLogger({ level: 'silent' })
const databaseUrl = testConfig().DATABASE_URL
const running: Array<{ controller: AbortController; done: Promise<void> }> = []

before(async () => {
  t = await openTestDb()
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('users').execute()
  secret = await insertUser(t.db, 'u1')
  receiver = await startReceiver()
})
afterEach(async () => {
  for (const { controller, done } of running.splice(0)) {
    controller.abort()
    receiver.release(503)
    await done
  }
  await receiver.close()
})

/** Starts a sender; a long poll interval by default, so only notifications make it look quickly. */
function startSender(options: Partial<CallbackSenderOptions> = {}): { sender: CallbackSender; stop: () => Promise<void> } {
  const sender = createCallbackSender(
    { db: t.db, log, listen: databaseUrl, schema: t.schema },
    {
      concurrency: 16,
      timeoutMs: 5000,
      retryBaseMs: 20,
      retryMaxMs: 1000,
      allowedNetworks: '127.0.0.1',
      leaseMs: 30_000,
      pollMs: 60_000,
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

const row = (id: string) => t.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const statusOf = async (id: string) => (await row(id)).status

test('a new delivery is sent within milliseconds of its commit (notification), signed, and recorded', async () => {
  const { sender } = startSender()
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  const began = performance.now()
  const { id, payload } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  // The poll interval is a minute: only the notification can bring it this soon.
  await waitFor(() => receiver.received.length === 1, { what: 'the callback', timeoutMs: 10_000, intervalMs: 5 })
  const [callback] = receiver.received
  assert.ok(callback)
  log.info({ ms: callback.at - began }, 'commit to arrival')
  assert.equal(callback.body, payload)
  assert.equal(callback.headers['webhook-id'], id)
  assert.equal(callback.headers['content-type'], 'application/json')
  assert.deepEqual(new Webhook(secret).verify(callback.body, webhookHeadersOf(callback)), JSON.parse(payload))
  assert.throws(() => new Webhook(secret).verify(`${callback.body} `, webhookHeadersOf(callback)), /No matching signature/)

  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'delivered' })
  const r = await row(id)
  assert.equal(r.attempts, 1)
  assert.equal(r.last_status, 200)
  assert.equal(r.lease_until, null)
  assert.equal(sender.stats.delivered, 1)
})

test('deliveries already waiting are sent at start, without a notification', async () => {
  const a = await insertDelivery(t.db, { userId: 'u1', url: receiver.url })
  const b = await insertDelivery(t.db, { userId: 'u1', url: receiver.url })
  startSender()
  await waitFor(async () => (await statusOf(a.id)) === 'delivered' && (await statusOf(b.id)) === 'delivered', { what: 'both' })
  assert.equal(receiver.byId(a.id).length, 1)
  assert.equal(receiver.byId(b.id).length, 1)
})

test('a 500 is retried with the same webhook-id and a fresh signature; attempts are counted', async () => {
  let calls = 0
  receiver.answer = () => (++calls === 1 ? 500 : 200)
  const { sender } = startSender({ random: () => 0 })
  const { id, payload } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'delivered after a retry' })
  const attempts = receiver.byId(id)
  assert.deepEqual(attempts.map((a) => a.status), [500, 200])
  for (const attempt of attempts) {
    assert.equal(attempt.body, payload)
    assert.deepEqual(new Webhook(secret).verify(attempt.body, webhookHeadersOf(attempt)), JSON.parse(payload))
  }
  const r = await row(id)
  assert.equal(r.attempts, 2)
  assert.equal(r.last_status, 200)
  assert.equal(r.last_error, null)
  assert.equal(sender.stats.retried, 1)
  assert.equal(sender.stats.delivered, 1)
})

test('the backoff doubles between attempts', async () => {
  receiver.answer = () => 500
  // Jitter fixed at its maximum: the delays are exactly 50, 100, 200, 400 ms.
  startSender({ random: () => 1, retryBaseMs: 50, retryMaxMs: 10_000, pollMs: 1000 })
  const { id } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  // Five attempts recorded (each is recorded after its request arrived, so waiting for the
  // fifth request alone could read the row before its failure is written).
  await waitFor(async () => (await row(id)).attempts >= 5, { what: 'five attempts' })
  const times = receiver.byId(id).map((a) => a.at)
  const gaps = times.slice(1).map((time, i) => time - times[i]!)
  // An attempt is scheduled after the previous answer arrived, so each gap is at least its delay.
  for (const [i, gap] of gaps.slice(0, 4).entries()) {
    const shown = gaps.map((g) => g.toFixed(0)).join(', ')
    assert.ok(gap >= 50 * 2 ** i - 1, `gap ${i} should be at least ${50 * 2 ** i} ms; gaps: ${shown}`)
  }
  const r = await row(id)
  assert.ok(r.attempts >= 5)
  assert.equal(r.status, 'pending')
  assert.equal(r.last_error, 'HTTP 500')
})

test('a delivery failing past its retry period becomes a dead letter; a replay delivers it', async () => {
  receiver.answer = () => 500
  const { sender } = startSender({ random: () => 1, retryBaseMs: 50 })
  await waitFor(() => sender.stats.listening, { what: 'LISTEN' })
  // Attempts after 0, 50, 150, 350 and 750 ms: the next would fall past the second.
  const { id, payload } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, retryForMs: 1000, notifySchema: t.schema })
  await waitFor(async () => (await statusOf(id)) === 'dead', { what: 'a dead letter' })
  const dead = await row(id)
  assert.ok(dead.attempts >= 2, `attempts: ${dead.attempts}`)
  assert.equal(receiver.byId(id).length, dead.attempts)
  assert.equal(dead.last_error, 'HTTP 500')
  assert.equal(dead.last_status, 500)
  assert.equal(sender.stats.deadLettered, 1)

  receiver.answer = () => 200
  assert.ok(await replayDeadLetter(t.db, id, { retryForMs: 60_000, schema: t.schema }))
  // The poll interval is a minute: the replay's notification wakes the sender.
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'the replayed delivery', timeoutMs: 10_000 })
  const last = receiver.byId(id).at(-1)!
  assert.equal(last.status, 200)
  assert.equal(last.body, payload)
  assert.deepEqual(new Webhook(secret).verify(last.body, webhookHeadersOf(last)), JSON.parse(payload))
  assert.equal((await row(id)).attempts, dead.attempts + 1)
})

test('SSRF: a loopback callback is refused without any request unless its network is allowed', async () => {
  const { sender } = startSender({ allowedNetworks: '', random: () => 1, retryBaseMs: 50 })
  const literal = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, retryForMs: 200, notifySchema: t.schema })
  const named = await insertDelivery(t.db, {
    userId: 'u1',
    url: receiver.url.replace('127.0.0.1', 'localhost'),
    retryForMs: 200,
    notifySchema: t.schema,
  })
  await waitFor(async () => (await statusOf(literal.id)) === 'dead' && (await statusOf(named.id)) === 'dead', {
    what: 'dead letters',
  })
  assert.equal(receiver.received.length, 0, 'nothing reached the endpoint')
  assert.match((await row(literal.id)).last_error ?? '', /refused: the address 127\.0\.0\.1 is private/)
  assert.match((await row(named.id)).last_error ?? '', /ERR_CALLBACK_ADDRESS_REFUSED.*localhost resolves to (127\.0\.0\.1|::1)/)
  assert.equal(sender.stats.deadLettered, 2)
})

test('a timeout or a refused connection is a failed attempt, retried', async () => {
  receiver.answer = () => 'hold'
  startSender({ timeoutMs: 200, random: () => 0, leaseMs: 1000 })
  const { id } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  await waitFor(async () => (await row(id)).attempts >= 1, { what: 'a timed out attempt' })
  assert.equal((await row(id)).last_error, 'timed out after 200 ms')

  const closed = await insertDelivery(t.db, { userId: 'u1', url: 'http://127.0.0.1:1/cb', notifySchema: t.schema })
  await waitFor(async () => (await row(closed.id)).attempts >= 1, { what: 'a refused connection' })
  assert.match((await row(closed.id)).last_error ?? '', /ECONNREFUSED/)
})

test('no more than `concurrency` requests at once; everything is delivered', async () => {
  receiver.answer = () => 'hold'
  const { sender } = startSender({ concurrency: 3 })
  const ids: string[] = []
  for (let i = 0; i < 10; i++) ids.push((await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })).id)
  await waitFor(() => receiver.held === 3, { what: 'three held requests' })
  assert.equal(sender.stats.inFlight, 3)
  const leased = await t.db.selectFrom('webhook_deliveries').select('id').where('lease_until', 'is not', null).execute()
  assert.equal(leased.length, 3, 'only what is in flight is claimed')
  receiver.answer = () => 200
  receiver.release(200)
  await waitFor(
    async () =>
      (await t.db.selectFrom('webhook_deliveries').select('id').where('status', '=', 'delivered').execute()).length === 10,
    { what: 'ten deliveries' },
  )
  assert.ok(receiver.maxOpen <= 3, `at most 3 open requests, saw ${receiver.maxOpen}`)
  for (const id of ids) assert.equal(receiver.byId(id).filter((r) => r.status === 200).length, 1)
})

test('stopping waits for the attempts in flight and records them', async () => {
  receiver.answer = () => 'hold'
  const { stop } = startSender()
  const { id } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  await waitFor(() => receiver.held === 1, { what: 'the held request' })
  let stopped = false
  const stopping = stop().then(() => {
    stopped = true
  })
  // A round trip to PostgreSQL: time for a sender that did not wait to resolve.
  await sql`select 1`.execute(t.db)
  assert.equal(stopped, false, 'still waiting for the request')
  receiver.release(200)
  await stopping
  assert.equal(await statusOf(id), 'delivered', 'recorded before run() resolved')
  const after = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  assert.equal((await row(after.id)).lease_until, null, 'a stopped sender claims nothing')
})

test('a lost LISTEN connection is reopened and notifications work again', async () => {
  const { sender } = startSender()
  const channel = `LISTEN "bourse_webhooks_${t.schema}"`
  const listenPid = async () => {
    const r = await sql<{ pid: number }>`select pid from pg_stat_activity where query = ${channel}`.execute(t.db)
    return sender.stats.listening ? r.rows[0]?.pid : undefined
  }
  const first = await waitFor(listenPid, { what: 'the LISTEN connection' })
  await sql`select pg_terminate_backend(${first})`.execute(t.db)
  await waitFor(async () => {
    const pid = await listenPid()
    return pid !== undefined && pid !== first
  }, { what: 'a new LISTEN connection' })
  const { id } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  await waitFor(async () => (await statusOf(id)) === 'delivered', { what: 'delivery after reconnecting', timeoutMs: 10_000 })
})
