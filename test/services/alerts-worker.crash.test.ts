/**
 * Crash safety of product alerts, proven with SIGKILL: two `bourse alerts-worker`
 * processes handle 2,000 due alerts (eBay answering in 20 ms, emails to a real SMTP
 * server) and are killed again and again, each kill once the victim is visibly working.
 * Afterwards every (alert, due time) has exactly one stored run with its 20 items, one
 * delivered email in the outbox, and one Message-ID in the SMTP server's mailbox.
 *
 * Over SMTP, "exactly once" has one gap, which this test measures rather than hides: a
 * worker killed after the SMTP server accepted an email and before the outbox recorded
 * it leaves the email to be sent again, under the same Message-ID. The mailbox then holds
 * two copies of one message, recognisable as such; the test checks that every copy of a
 * Message-ID is the same message, and reports how many repeats there were.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql } from 'kysely'
import { alertEmailId } from '../../src/alerts/alerts.jobs.ts'
import { createDistributor, type RunJobData } from '../../src/alerts/distributor.ts'
import { createEbaySim, type EbaySim } from '../../src/alerts/ebay-sim.ts'
import { RUNS_QUEUE } from '../../src/alerts/queues.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { createMailSink, type MailSink } from '../../src/platform/mail/mail-sink.ts'
import { type OpenQueue, openQueue } from '../../src/platform/queues.ts'
import { createAlertUsers, insertAlerts, testQueueConnection } from '../helpers/alerts.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testEnv, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

const ALERTS = 2000
const KILLS = 6
const DOMAIN = 'crash.test'
const log = createLogger({ level: 'silent', pretty: false })
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0)

let testDb: TestDb
let sim: EbaySim
let sink: MailSink
let runs: OpenQueue<RunJobData>
const running = new Set<ServiceProcess>()

before(async () => {
  testDb = await openTestDb()
  await createAlertUsers(testDb.db)
  sim = createEbaySim({ seed: 11, faults: { latencyMs: 20 } })
  await sim.listen(0, '127.0.0.1')
  sink = createMailSink({ smtpPort: 0, httpPort: null, maxMessages: 3 * ALERTS })
  await sink.listen()
})
after(async () => {
  for (const service of running) await service.kill()
  await runs?.queue.obliterate({ force: true }).catch(() => {})
  await runs?.close()
  await sink.close()
  await sim.close()
  await testDb.close()
})

test('workers SIGKILLed again and again: each (alert, due time) has one run and one email', { timeout: 600_000 }, async (t) => {
  const ids = await insertAlerts(
    testDb.db,
    Array.from({ length: ALERTS }, (_, i) => ({ frequency: 30 as const, nextRunAt: new Date(T0), phrase: `crash item ${i % 50}`, email: `reader${i}@example.com` })),
  )
  const connection = testQueueConnection()
  runs = openQueue<RunJobData>(RUNS_QUEUE, connection)
  const claimed = await createDistributor({ db: testDb.db, runs: runs.queue, log }, { batchSize: 500, jobOptions: { attempts: 10, backoff: { type: 'fixed', delay: 100 } } }).tick(new Date(T0))
  assert.equal(claimed.claimed, ALERTS)

  const env = testEnv({
    ...testDb.env,
    QUEUE_PREFIX: connection.prefix,
    EBAY_BASE_URL: sim.url!,
    SMTP_URL: sink.smtpUrl!,
    MAIL_FROM: `Bourse alerts <alerts@${DOMAIN}>`,
    ALERTS_JOB_LOCK_MS: '2000',
    ALERTS_EMAIL_LEASE_MS: '5000',
  })
  const start = (n: number) => {
    const service = startService(['alerts-worker', '--concurrency', '40', '--instance-id', `crash-${n}-${Date.now()}`], env)
    running.add(service)
    return service
  }
  const workers = [start(0), start(1)]
  const { db } = testDb
  const count = async (query: ReturnType<typeof sql<{ n: number }>>) => (await query.execute(db)).rows[0]?.n ?? 0
  const storedRuns = () => count(sql<{ n: number }>`select count(*)::int as n from alert_runs where status = 'done'`)

  const atKill: Array<{ runs: number; mails: number }> = []
  for (let round = 0; round < KILLS; round++) {
    const victim = round % 2
    const before = await storedRuns()
    const mailsBefore = sink.stats.received
    // Kill once the victim's pair is visibly storing runs and sending mail. The first round
    // waits for two processes to start: on a busy two-core machine (another lane, other
    // work) that alone took over a minute once, hence the room.
    await waitFor(async () => (await storedRuns()) > before + 20 && sink.stats.received > mailsBefore, { timeoutMs: 180_000, what: 'workers at work' })
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 300))
    atKill.push({ runs: await storedRuns(), mails: sink.stats.received })
    await workers[victim]!.kill()
    running.delete(workers[victim]!)
    workers[victim] = start(round + 2)
  }
  assert.ok(atKill.every((k) => k.runs < ALERTS), `runs were left at every kill: ${JSON.stringify(atKill)}`)
  t.diagnostic(`stored runs and received mails at each kill: ${atKill.map((k) => `${k.runs}/${k.mails}`).join(', ')}`)

  await waitFor(async () => (await storedRuns()) === ALERTS, { timeoutMs: 240_000, intervalMs: 200, what: 'every run stored' })
  await waitFor(
    async () => (await count(sql<{ n: number }>`select count(*)::int as n from alert_emails where status = 'delivered'`)) === ALERTS,
    { timeoutMs: 120_000, intervalMs: 200, what: 'every email delivered' },
  )

  // One run per (alert, due time), each with its 20 items.
  const perRun = await sql<{ alert_id: string; runs: number; items: number }>`
    select r.alert_id::text, count(distinct r.id)::int as runs, count(i.*)::int as items
    from alert_runs r left join alert_items i on i.run_id = r.id group by r.alert_id
  `.execute(db)
  assert.equal(perRun.rows.length, ALERTS)
  assert.ok(perRun.rows.every((r) => r.runs === 1 && r.items === 20), 'one run of 20 items per alert')
  assert.equal(await count(sql<{ n: number }>`select count(*)::int as n from alert_emails`), ALERTS, 'one outbox email per (alert, due time)')

  // The mailbox: one Message-ID per (alert, due time); repeats are the same message.
  const mails = sink.messages()
  const byId = new Map<string, typeof mails>()
  for (const mail of mails) byId.set(mail.messageId ?? '', [...(byId.get(mail.messageId ?? '') ?? []), mail])
  const expected = new Set(ids.map((id) => `<${alertEmailId('list', id, new Date(T0))}@${DOMAIN}>`))
  assert.equal(byId.size, ALERTS, 'one Message-ID per (alert, due time)')
  assert.deepEqual(new Set(byId.keys()), expected)
  for (const copies of byId.values()) {
    assert.ok(copies.every((c) => c.subject === copies[0]!.subject && c.text === copies[0]!.text && c.to === copies[0]!.to))
  }
  const repeats = mails.length - byId.size
  t.diagnostic(`${mails.length} messages for ${ALERTS} emails: ${repeats} repeated under their Message-ID (accepted by SMTP, then the sender was killed before recording it)`)
  const failedJobs = await runs.queue.getFailedCount()
  assert.equal(failedJobs, 0)
})
