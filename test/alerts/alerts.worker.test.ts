/**
 * The alerts worker end to end in one process: the distributor hands runs to the real
 * queue (BullMQ on the test Redis), the worker searches `ebay-sim` over HTTP, stores the
 * run in PostgreSQL and mails through a real SMTP server (the mail sink), parsed with
 * mailparser. Every eBay and SMTP failure ends in a retry or a recorded failure with its
 * reason.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, test } from 'node:test'
import { sql } from 'kysely'
import { startAlertsWorker, type AlertsWorker } from '../../src/alerts/alerts.worker.ts'
import { alertEmailId } from '../../src/alerts/alerts.jobs.ts'
import { createDistributor, type RunJobData } from '../../src/alerts/distributor.ts'
import { createEbayClient, type EbayClient } from '../../src/alerts/ebay.client.ts'
import { createEbaySim, type EbaySim } from '../../src/alerts/ebay-sim.ts'
import { RUNS_QUEUE } from '../../src/alerts/queues.ts'
import { createUnsubscribeSigner } from '../../src/alerts/unsubscribe.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { createMailer, type Mailer } from '../../src/platform/mail/mailer.ts'
import { createMailSink, type MailSink, type ReceivedMail } from '../../src/platform/mail/mail-sink.ts'
import { type OpenQueue, openQueue, type QueueConnection } from '../../src/platform/queues.ts'
import { createAlertUsers, insertAlerts, testQueueConnection } from '../helpers/alerts.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testConfig, waitFor } from '../helpers/infra.ts'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const log = createLogger({ level: 'silent', pretty: false })
const DOMAIN = 'bourse.test'

describe('alerts worker', () => {
  let testDb: TestDb
  let sim: EbaySim
  let simNow = Date.UTC(2026, 0, 5, 10, 0, 0)
  let sink: MailSink
  let mailer: Mailer
  let ebay: EbayClient
  let connection: QueueConnection
  let runs: OpenQueue<RunJobData>
  let worker: AlertsWorker | undefined

  before(async () => {
    testDb = await openTestDb()
    await createAlertUsers(testDb.db)
    sim = createEbaySim({ seed: 7, now: () => simNow })
    await sim.listen(0, '127.0.0.1')
    sink = createMailSink({ smtpPort: 0, httpPort: null })
    await sink.listen()
    mailer = createMailer({ url: sink.smtpUrl!, from: `Bourse alerts <alerts@${DOMAIN}>`, timeoutMs: 5000, log })
  })
  after(async () => {
    await mailer.close()
    await sink.close()
    await sim.close()
    await testDb.close()
  })
  beforeEach(async () => {
    connection = testQueueConnection()
    runs = openQueue<RunJobData>(RUNS_QUEUE, connection)
    ebay = createEbayClient({ baseUrl: sim.url!, clientId: 'bourse-sim', clientSecret: 'bourse-sim-secret', marketplaceId: 'EBAY_US', timeoutMs: 5000 })
    sink.clear()
    await sql`truncate alerts cascade`.execute(testDb.db)
  })
  afterEach(async () => {
    await worker?.close()
    worker = undefined
    await runs.queue.obliterate({ force: true })
    await runs.close()
    await ebay.close()
    sim.setFaults({ serverErrors: 0, rateLimited: 0, malformedAnswers: 0, itemsWithoutPrice: 0, tokenFailures: 0, latencyMs: 0 })
  })

  function start(overrides: Partial<Parameters<typeof startAlertsWorker>[1]> = {}, mail: Pick<Mailer, 'send'> = mailer): AlertsWorker {
    worker = startAlertsWorker(
      {
        db: testDb.db,
        log,
        queues: connection,
        ebay,
        mailer: mail,
        signer: createUnsubscribeSigner(testDb.db),
        listen: testConfig().DATABASE_URL,
        schema: testDb.schema,
      },
      {
        concurrency: 4,
        lockMs: 5000,
        emailPollMs: 100,
        emailRetryBaseMs: 50,
        publicUrl: 'http://bourse.test:8000',
        messageIdDomain: DOMAIN,
        insights: { dropPercent: '10', windowMs: 2 * HOUR, flatMs: 2 * HOUR },
        insightMinIntervalMs: 0,
        emailRetryForMs: 60_000,
        ...overrides,
      },
    )
    return worker
  }

  /** Makes `alertIds` due at `at`, ticks, and waits until their runs are no longer queued. */
  async function runAt(at: number, alertIds: string[], jobOptions = { attempts: 3, backoff: { type: 'fixed', delay: 50 } }) {
    simNow = at
    await sql`
      update alerts set next_run_at = case when id = any(${alertIds}::bigint[]) then ${new Date(at)}::timestamptz else ${new Date(at + 365 * 24 * HOUR)}::timestamptz end
    `.execute(testDb.db)
    const result = await createDistributor({ db: testDb.db, runs: runs.queue, log }, { batchSize: 100, jobOptions }).tick(new Date(at))
    assert.equal(result.claimed, alertIds.length)
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from alert_runs where alert_id = any(${alertIds}::bigint[]) and due_at = ${new Date(at)} and status <> 'queued'
        `.execute(testDb.db)
        return rows[0]?.n === alertIds.length
      },
      { timeoutMs: 30_000, what: 'the runs to end' },
    )
  }

  const runOf = (alertId: string, at: number) =>
    testDb.db
      .selectFrom('alert_runs')
      .selectAll()
      .where('alert_id', '=', alertId)
      .where('due_at', '=', new Date(at))
      .executeTakeFirstOrThrow()

  const mailFor = (kind: 'list' | 'insight', alertId: string, at: number, timeoutMs = 10_000): Promise<ReceivedMail> =>
    sink.waitFor((m) => m.messageId === `<${alertEmailId(kind, alertId, new Date(at))}@${DOMAIN}>`, timeoutMs)

  test('a run stores the 20 cheapest items exactly and mails them: HTML and text parts, one-click unsubscribe', async () => {
    start()
    const [id] = await insertAlerts(testDb.db, [{ frequency: 10, nextRunAt: new Date(simNow), phrase: 'Drone Camera', email: 'pilot@example.com' }])
    const at = simNow
    await runAt(at, [id!])
    const run = await runOf(id!, at)
    assert.equal(run.status, 'done')
    const expected = sim.catalogue.cheapest('Drone Camera', { now: at })
    const items = await testDb.db.selectFrom('alert_items').selectAll().where('run_id', '=', run.id).orderBy('position').execute()
    assert.equal(items.length, 20)
    assert.deepEqual(
      items.map((i) => [i.item_id, i.total, i.price, i.shipping]),
      expected.map((e) => [e.itemId, e.total, e.price, e.shipping]),
    )
    assert.equal(run.cheapest_total, expected[0]!.total)

    const mail = await mailFor('list', id!, at)
    assert.equal(mail.to, 'pilot@example.com')
    assert.match(mail.subject, /Drone Camera/)
    assert.ok(mail.html && mail.text, 'both parts')
    for (const item of expected) {
      assert.ok(mail.text!.includes(item.total), `the text part lists ${item.total}`)
      assert.ok(mail.html!.includes(item.itemWebUrl.replaceAll('&', '&amp;')), 'the HTML part links each item')
    }
    assert.match(mail.headers['list-unsubscribe'] ?? '', /^<http:\/\/bourse\.test:8000\/api\/alerts\/unsubscribe\/[A-Za-z0-9_.-]+>$/)
    assert.equal(mail.headers['list-unsubscribe-post'], 'List-Unsubscribe=One-Click')
    const link = /<(.+)>/.exec(mail.headers['list-unsubscribe']!)![1]!
    assert.ok(mail.html!.includes(link) && mail.text!.includes(link), 'the body carries the unsubscribe link too')
    const outbox = await waitFor(async () => {
      const rows = await testDb.db.selectFrom('alert_emails').selectAll().where('alert_id', '=', id!).execute()
      return rows.every((e) => e.status === 'delivered') ? rows : undefined
    })
    assert.deepEqual(outbox.map((e) => e.kind), ['list'])
  })

  test('eBay answering 500, a garbled body, or a failing token endpoint: the run is retried and stored once', async () => {
    start()
    const ids = await insertAlerts(testDb.db, [{ frequency: 2, nextRunAt: new Date(simNow), phrase: 'tent' }])
    sim.setFaults({ tokenFailures: 1 })
    await runAt(simNow + 2 * MINUTE, ids, { attempts: 5, backoff: { type: 'fixed', delay: 50 } })
    sim.setFaults({ serverErrors: 1, malformedAnswers: 1 })
    await runAt(simNow + 2 * MINUTE, ids, { attempts: 5, backoff: { type: 'fixed', delay: 50 } })
    const rows = await testDb.db.selectFrom('alert_runs').selectAll().where('alert_id', '=', ids[0]!).orderBy('due_at').execute()
    assert.deepEqual(rows.map((r) => [r.status, r.attempts]), [['done', 2], ['done', 3]])
    assert.equal(sim.stats.tokenErrors, 1)
    const items = await sql<{ n: number }>`select count(*)::int as n from alert_items i join alert_runs r on r.id = i.run_id where r.alert_id = ${ids[0]}`.execute(testDb.db)
    assert.equal(items.rows[0]?.n, 40, 'each run stored its items once')
  })

  test("eBay's 429 pauses the whole queue for its Retry-After without using up an attempt", async () => {
    const w = start()
    const ids = await insertAlerts(testDb.db, [{ frequency: 30, nextRunAt: new Date(simNow), phrase: 'kayak' }])
    sim.setFaults({ rateLimited: 1, retryAfterSeconds: 1 })
    const started = Date.now()
    await runAt(simNow + 30 * MINUTE, ids, { attempts: 1, backoff: { type: 'fixed', delay: 50 } })
    const run = await runOf(ids[0]!, simNow)
    assert.equal(run.status, 'done', 'one attempt allowed, and the 429 did not use it')
    assert.equal(w.stats.rateLimited, 1)
    assert.ok(Date.now() - started >= 900, 'the queue waited for the Retry-After')
  })

  test('items without a price are skipped with their reason; the run keeps the others', async () => {
    start()
    const ids = await insertAlerts(testDb.db, [{ frequency: 10, nextRunAt: new Date(simNow), phrase: 'lamp' }])
    sim.setFaults({ itemsWithoutPrice: 3 })
    await runAt(simNow + 10 * MINUTE, ids)
    const run = await runOf(ids[0]!, simNow)
    assert.equal(run.status, 'done')
    assert.equal(run.skipped_items?.length, 3)
    for (const skipped of run.skipped_items ?? []) assert.match(skipped.reason, /price/)
    await mailFor('list', ids[0]!, simNow)
  })

  test('a run that keeps failing ends failed with its reason, and its job in the failed set', async () => {
    start()
    const ids = await insertAlerts(testDb.db, [{ frequency: 10, nextRunAt: new Date(simNow), phrase: 'sofa' }])
    sim.setFaults({ serverErrors: 100 })
    await runAt(simNow + 10 * MINUTE, ids, { attempts: 3, backoff: { type: 'fixed', delay: 20 } })
    const run = await runOf(ids[0]!, simNow)
    assert.equal(run.status, 'failed')
    assert.equal(run.attempts, 3)
    assert.match(run.error ?? '', /500|unavailable/i)
    const failed = await runs.queue.getFailed()
    assert.equal(failed.length, 1)
    assert.match(failed[0]!.failedReason, /500|unavailable/i)
    assert.equal((await sql<{ n: number }>`select count(*)::int as n from alert_emails where alert_id = ${ids[0]}`.execute(testDb.db)).rows[0]?.n, 0)
  })

  test('SMTP refusing for a while (451) is retried; refusing for good (550) is a dead letter with its reason', async () => {
    start()
    const [a, b] = await insertAlerts(testDb.db, [
      { frequency: 2, nextRunAt: new Date(simNow), phrase: 'chair' },
      { frequency: 2, nextRunAt: new Date(simNow + 365 * 24 * HOUR), phrase: 'table' },
    ])
    sink.refuseNext(2, 451)
    await runAt(simNow + 2 * MINUTE, [a!])
    await mailFor('list', a!, simNow)
    const first = await waitFor(async () => {
      const row = await testDb.db.selectFrom('alert_emails').selectAll().where('alert_id', '=', a!).executeTakeFirstOrThrow()
      return row.status === 'delivered' ? row : undefined
    })
    assert.equal(first.attempts, 3)

    sink.refuseNext(1, 550)
    await runAt(simNow + 2 * MINUTE, [b!])
    const dead = await waitFor(
      async () => {
        const row = await testDb.db.selectFrom('alert_emails').selectAll().where('alert_id', '=', b!).executeTakeFirst()
        return row?.status === 'dead' ? row : undefined
      },
      { what: 'the refused email to be a dead letter' },
    )
    assert.equal(dead.last_status, 550)
    assert.match(dead.last_error ?? '', /550/)
  })

  test('SMTP down: the email waits in the outbox, retried, and goes when SMTP is back', async () => {
    const down = createMailSink({ smtpPort: 0, httpPort: null })
    await down.listen()
    const url = down.smtpUrl!
    await down.close()
    const unreachable = createMailer({ url, from: `Bourse alerts <alerts@${DOMAIN}>`, timeoutMs: 2000, log })
    start({}, unreachable)
    const ids = await insertAlerts(testDb.db, [{ frequency: 30, nextRunAt: new Date(simNow), phrase: 'bike' }])
    await runAt(simNow + 30 * MINUTE, ids)
    const pending = await waitFor(
      async () => {
        const row = await testDb.db.selectFrom('alert_emails').selectAll().where('alert_id', '=', ids[0]!).executeTakeFirst()
        return row && row.attempts >= 2 ? row : undefined
      },
      { what: 'two failed attempts' },
    )
    assert.equal(pending.status, 'pending')
    assert.ok(pending.last_error)
    // A worker with a working mailer sends it (the outbox is shared).
    await worker!.close()
    await unreachable.close()
    start()
    await mailFor('list', ids[0]!, simNow, 15_000)
  })

  test("insights on the fake's moving prices: a drop of more than 10%, naming both prices, and an item under the maximum", async () => {
    // The drop is against the previous hour: the step before the drop.
    start({ insights: { dropPercent: '10', windowMs: HOUR, flatMs: 2 * HOUR } })
    const phrase = 'vintage camera'
    const from = sim.catalogue.stepAt(simNow)
    const dropStep = sim.catalogue.findStep(phrase, 'drop', { from: from + 3 })
    const before = sim.catalogue.cheapest(phrase, { step: dropStep - 1 })[0]!
    const afterDrop = sim.catalogue.cheapest(phrase, { step: dropStep })[0]!
    // A maximum price the drop crosses: at or under it only after the drop.
    const [id] = await insertAlerts(testDb.db, [{ frequency: 30, nextRunAt: new Date(0), phrase, maxPrice: afterDrop.total }])
    // Runs every 30 simulated minutes through the two hours before the drop, then at the drop.
    const mid = sim.catalogue.timeOfStep(dropStep)
    const times = Array.from({ length: 5 }, (_, i) => mid - 2 * HOUR + i * 30 * MINUTE)
    for (const at of times) await runAt(at, [id!])
    // The first run in the step where prices dropped.
    const dropAt = times.find((at) => sim.catalogue.stepAt(at) === dropStep)!
    const history = await testDb.db.selectFrom('alert_runs').select(['due_at', 'cheapest_total', 'status', 'error']).where('alert_id', '=', id!).orderBy('due_at').execute()
    const insight = await mailFor('insight', id!, dropAt).catch((err: unknown) => {
      throw new Error(`${String(err)}; runs ${JSON.stringify(history)}; before ${before.total} after ${afterDrop.total}`)
    })
    assert.ok(insight.text?.includes(afterDrop.total) && insight.text.includes(before.total), insight.text ?? '')
    assert.ok(insight.html?.includes(afterDrop.total))
    assert.match(insight.text ?? '', /The cheapest price fell [\d.]+%/)
    assert.match(insight.text ?? '', /An item under your maximum of/)
    // One insight: the runs before the drop, and the one after it in the same step, gave none.
    const insights = await testDb.db.selectFrom('alert_emails').select(['due_at']).where('alert_id', '=', id!).where('kind', '=', 'insight').execute()
    assert.deepEqual(insights.map((e) => e.due_at.getTime()), [dropAt])
  })

  test("insights on the fake's moving prices: a market flat for the flat span is said once", async () => {
    start({ insights: { dropPercent: '10', windowMs: HOUR, flatMs: HOUR } })
    const phrase = 'garden hose'
    const from = sim.catalogue.stepAt(simNow)
    const flatStep = sim.catalogue.findStep(phrase, 'flat', { from: from + 3 })
    const price = sim.catalogue.cheapest(phrase, { step: flatStep })[0]!
    const [id] = await insertAlerts(testDb.db, [{ frequency: 30, nextRunAt: new Date(0), phrase }])
    // Runs every 30 minutes through the two flat steps (the one before and the flat one).
    const start0 = sim.catalogue.timeOfStep(flatStep - 1) - 30 * MINUTE
    const times = Array.from({ length: 4 }, (_, i) => start0 + i * 30 * MINUTE)
    for (const at of times) await runAt(at, [id!])
    const insights = await waitFor(async () => {
      const rows = await testDb.db.selectFrom('alert_emails').select(['due_at']).where('alert_id', '=', id!).where('kind', '=', 'insight').execute()
      return rows.length > 0 ? rows : undefined
    })
    const subjects = (await testDb.db.selectFrom('alert_emails').select(['due_at', 'text']).where('alert_id', '=', id!).where('kind', '=', 'insight').execute()).map((r) => `${r.due_at.toISOString()} ${r.text.slice(0, 300)}`)
    assert.equal(insights.length, 1, `said once: ${JSON.stringify(subjects)} runs at ${times.map((t) => new Date(t).toISOString())}`)
    const mail = await mailFor('insight', id!, insights[0]!.due_at.getTime())
    assert.match(mail.text ?? '', /The cheapest price has not moved for 1 hour/)
    assert.ok(mail.text?.includes(price.total))
  })
})
