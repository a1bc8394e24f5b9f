import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import { sql } from 'kysely'
import { createDistributor, type RunJobData, runJobId } from '../../src/alerts/distributor.ts'
import { RUNS_QUEUE } from '../../src/alerts/queues.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { type OpenQueue, openQueue } from '../../src/platform/queues.ts'
import { createAlertUsers, insertAlerts, recordedRuns, testQueueConnection } from '../helpers/alerts.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

const MINUTE = 60_000
const log = createLogger({ level: 'silent', pretty: false })
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0)

describe('alerts distributor', () => {
  let testDb: TestDb
  let queues: Array<OpenQueue<RunJobData>>

  before(async () => {
    testDb = await openTestDb()
    await createAlertUsers(testDb.db)
  })
  after(async () => {
    await testDb.close()
  })
  beforeEach(async () => {
    await sql`truncate alerts, alert_runs cascade`.execute(testDb.db)
    for (const q of queues ?? []) {
      await q.queue.obliterate({ force: true })
      await q.close()
    }
    const connection = testQueueConnection()
    queues = [openQueue<RunJobData>(RUNS_QUEUE, connection), openQueue<RunJobData>(RUNS_QUEUE, connection)]
  })
  after(async () => {
    for (const q of queues) {
      await q.queue.obliterate({ force: true })
      await q.close()
    }
  })

  const distributor = (i = 0, batchSize = 100) => createDistributor({ db: testDb.db, runs: queues[i]!.queue, log }, { batchSize })

  test('a due alert gets one run at its due time, and its next run moves one period on', async () => {
    const [id] = await insertAlerts(testDb.db, [{ frequency: 10, nextRunAt: new Date(T0) }])
    const notDue = await insertAlerts(testDb.db, [{ frequency: 2, nextRunAt: new Date(T0 + 2 * MINUTE) }])
    const paused = await insertAlerts(testDb.db, [{ frequency: 2, nextRunAt: new Date(T0), status: 'paused' }])
    const first = await distributor().tick(new Date(T0))
    assert.equal(first.claimed, 1)
    assert.deepEqual(await recordedRuns(testDb.db), [`${id}@${T0}`])
    // The same tick again (a second scheduler, a retried tick job): nothing more.
    assert.equal((await distributor().tick(new Date(T0))).claimed, 0)
    const alert = await testDb.db.selectFrom('alerts').select('next_run_at').where('id', '=', id!).executeTakeFirstOrThrow()
    assert.equal(alert.next_run_at.getTime(), T0 + 10 * MINUTE)
    const [job] = await queues[0]!.queue.getJobs(['waiting'])
    assert.ok(job)
    assert.equal(job.data.alertId, id)
    assert.equal(job.data.dueAt, new Date(T0).toISOString())
    assert.equal(job.id, runJobId(job.data.runId))
    assert.ok(notDue[0] && paused[0])
  })

  test('due times missed while no scheduler ran are caught up by one run, at the latest of them', async () => {
    const [id] = await insertAlerts(testDb.db, [{ frequency: 2, nextRunAt: new Date(T0) }])
    // Down for 11 minutes: due times T0, +2, ..., +10 passed; the tick at +11 runs once, for +10.
    const result = await distributor().tick(new Date(T0 + 11 * MINUTE))
    assert.equal(result.claimed, 1)
    assert.deepEqual(await recordedRuns(testDb.db), [`${id}@${T0 + 10 * MINUTE}`])
    const alert = await testDb.db.selectFrom('alerts').select('next_run_at').where('id', '=', id!).executeTakeFirstOrThrow()
    assert.equal(alert.next_run_at.getTime(), T0 + 12 * MINUTE)
  })

  test('two distributors ticking at once claim disjoint batches: every due alert runs once', async () => {
    const alerts = Array.from({ length: 3000 }, (_, i) => ({ frequency: ([2, 10, 30] as const)[i % 3]!, nextRunAt: new Date(T0 - (i % 7) * MINUTE) }))
    const ids = await insertAlerts(testDb.db, alerts)
    const [a, b] = await Promise.all([distributor(0, 97).tick(new Date(T0)), distributor(1, 89).tick(new Date(T0))])
    assert.equal(a.claimed + b.claimed, 3000)
    assert.ok(a.claimed > 0 && b.claimed > 0, `both took a share (${a.claimed}, ${b.claimed})`)
    const runs = await recordedRuns(testDb.db)
    assert.equal(new Set(runs).size, 3000)
    assert.deepEqual(new Set(runs.map((r) => r.split('@')[0])), new Set(ids))
    const counts = await queues[0]!.queue.getJobCounts('waiting')
    assert.equal(counts.waiting, 3000)
  })

  test('runs recorded but never enqueued (a distributor died in between) are enqueued by the next tick', async () => {
    const [id] = await insertAlerts(testDb.db, [{ frequency: 30, nextRunAt: new Date(T0 + 30 * MINUTE) }])
    await sql`
      insert into alert_runs (alert_id, due_at, created_at) values (${id}, ${new Date(T0)}, now() - interval '5 minutes')
    `.execute(testDb.db)
    const result = await distributor().tick(new Date(T0 + 2 * MINUTE))
    assert.equal(result.requeued, 1)
    assert.equal(result.claimed, 0)
    const [job] = await queues[0]!.queue.getJobs(['waiting'])
    assert.equal(job?.data.alertId, id)
    const run = await testDb.db.selectFrom('alert_runs').select('enqueued_at').executeTakeFirstOrThrow()
    assert.ok(run.enqueued_at)
    // Enqueued once: the next tick leaves it.
    assert.equal((await distributor().tick(new Date(T0 + 4 * MINUTE))).requeued, 0)
  })
})
