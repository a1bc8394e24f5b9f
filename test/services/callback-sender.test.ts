/**
 * `bourse callback-sender` as a real process: a SIGKILL while callbacks are in flight
 * loses none (each arrives after the restart, with its webhook-id), SIGTERM finishes what
 * is in flight and exits 0.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { after, afterEach, before, beforeEach, test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { runCli, startCli, testEnv, waitFor } from '../helpers/infra.ts'
import {
  insertDelivery,
  insertUser,
  type Receiver,
  startReceiver,
  webhookHeadersOf,
} from '../trading/webhooks/webhook-fixtures.ts'

let t: TestDb
let receiver: Receiver
let secret: string
const children: ChildProcess[] = []

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
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }
  await receiver.close()
})

/** Starts the command; `output()` is its log so far (info level). */
function startSender(args: string[] = []): { child: ChildProcess; output: () => string } {
  const env = testEnv({ ...t.env, CALLBACK_ALLOWED_NETWORKS: '127.0.0.1', LOG_LEVEL: 'info' })
  const child = startCli(['callback-sender', ...args], env)
  children.push(child)
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGKILL') process.stderr.write(`callback-sender exited ${code ?? signal}:\n${stderr}\n`)
  })
  return { child, output: () => stderr }
}

const statuses = async () =>
  (await t.db.selectFrom('webhook_deliveries').select(['id', 'status', 'attempts']).execute()).sort((a, b) =>
    a.id.localeCompare(b.id),
  )

test('--help describes the command', async () => {
  const result = await runCli(['callback-sender', '--help'])
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /Usage: bourse callback-sender/)
  assert.match(result.stdout, /--lease-ms/)
  const bad = await runCli(['callback-sender', '--concurrency', '0'], testEnv(t.env))
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--concurrency must be a whole number/)
})

test('SIGKILL with callbacks in flight: after a restart each arrives, with its webhook-id', async () => {
  receiver.answer = () => 'hold'
  const deliveries = []
  for (let i = 0; i < 12; i++) deliveries.push(await insertDelivery(t.db, { userId: 'u1', url: receiver.url }))
  // A short lease, so the restarted sender takes the killed one's deliveries soon.
  const { child: first } = startSender(['--lease-ms', '1000'])
  await waitFor(() => receiver.held === deliveries.length, { what: 'every callback held by the endpoint' })
  first.kill('SIGKILL')
  await once(first, 'exit')
  assert.ok((await statuses()).every((d) => d.status === 'pending' && d.attempts === 0), 'nothing recorded')

  receiver.answer = () => 200
  const { child: second } = startSender(['--lease-ms', '1000'])
  await waitFor(async () => (await statuses()).every((d) => d.status === 'delivered'), { what: 'every delivery' })
  for (const { id, payload } of deliveries) {
    const attempts = receiver.byId(id)
    assert.ok(attempts.length >= 2, `${id}: sent before the kill and after the restart`)
    assert.ok(attempts.every((a) => a.body === payload))
    const answered = attempts.filter((a) => a.status === 200)
    assert.ok(answered.length >= 1, `${id} arrived`)
    for (const attempt of answered) {
      assert.deepEqual(new Webhook(secret).verify(attempt.body, webhookHeadersOf(attempt)), JSON.parse(payload))
    }
  }
  const ids = new Set(receiver.received.map((r) => r.headers['webhook-id']))
  assert.deepEqual([...ids].sort(), deliveries.map((d) => d.id).sort(), 'no other webhook-id was ever sent')

  second.kill('SIGTERM')
  const [code] = (await once(second, 'exit')) as [number | null]
  assert.equal(code, 0)
})

test('SIGTERM waits for the callbacks in flight, records them and exits 0', async () => {
  receiver.answer = () => 'hold'
  const { child, output } = startSender()
  const { id } = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  await waitFor(() => receiver.held === 1, { what: 'the held callback' })
  const exited = once(child, 'exit') as Promise<[number | null]>
  child.kill('SIGTERM')
  await waitFor(() => output().includes('"shutting down"'), { what: 'the shutdown to start' })
  // The sender stopped claiming: a callback written now stays for another sender.
  const later = await insertDelivery(t.db, { userId: 'u1', url: receiver.url, notifySchema: t.schema })
  assert.equal(child.exitCode, null, 'still running while the request is open')
  receiver.release(200)
  const [code] = await exited
  assert.equal(code, 0)
  const rows = await statuses()
  assert.equal(rows.find((r) => r.id === id)?.status, 'delivered')
  assert.equal(rows.find((r) => r.id === later.id)?.status, 'pending')
  assert.equal(receiver.byId(later.id).length, 0)
})
