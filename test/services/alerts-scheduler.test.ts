/**
 * `bourse alerts-scheduler` as real processes: two instances at once make one schedule
 * and one tick per period (BullMQ has had bugs with several processes upserting one job
 * scheduler), and their ticks hand the due alerts to the queue, each once.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { RunJobData } from '../../src/alerts/distributor.ts'
import { RUNS_QUEUE, TICKS_QUEUE } from '../../src/alerts/queues.ts'
import { type OpenQueue, openQueue } from '../../src/platform/queues.ts'
import { createAlertUsers, insertAlerts, recordedRuns, testQueueConnection } from '../helpers/alerts.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testEnv, waitFor } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

const TICK_MS = 1000

let testDb: TestDb
const running = new Set<ServiceProcess>()
const queues: Array<OpenQueue<unknown>> = []

before(async () => {
  testDb = await openTestDb()
  await createAlertUsers(testDb.db)
})
after(async () => {
  for (const service of running) await service.kill()
  for (const q of queues) {
    await q.queue.obliterate({ force: true }).catch(() => {})
    await q.close()
  }
  await testDb.close()
})

test('two schedulers: one job scheduler, one tick per period, every due alert enqueued once', { timeout: 120_000 }, async (t) => {
  const connection = testQueueConnection()
  const ticks = openQueue(TICKS_QUEUE, connection)
  const runs = openQueue<RunJobData>(RUNS_QUEUE, connection)
  queues.push(ticks, runs as OpenQueue<unknown>)
  const env = testEnv({ ...testDb.env, QUEUE_PREFIX: connection.prefix, ALERTS_TICK_MS: String(TICK_MS) })
  const start = (n: number) => {
    const service = startService(['alerts-scheduler', '--instance-id', `scheduler-${n}`], env)
    running.add(service)
    return service
  }
  start(1)
  start(2)
  // 40 alerts due now, and 40 more due a few ticks later.
  const now = Date.now()
  const first = await insertAlerts(testDb.db, Array.from({ length: 40 }, () => ({ frequency: 30 as const, nextRunAt: new Date(now) })))
  const later = await insertAlerts(testDb.db, Array.from({ length: 40 }, () => ({ frequency: 30 as const, nextRunAt: new Date(now + 3 * TICK_MS) })))

  await waitFor(async () => (await recordedRuns(testDb.db)).length === 80, { timeoutMs: 30_000, what: '80 runs recorded' })
  // Both schedulers are up and ticking: watch the ticks for 8 periods.
  const observeFrom = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 8 * TICK_MS))
  const observeTo = Date.now() - TICK_MS / 2

  const schedulers = await ticks.queue.getJobSchedulers()
  assert.equal(schedulers.length, 1, 'one job scheduler for the two processes')
  assert.equal(schedulers[0]?.every, TICK_MS)
  const done = await ticks.queue.getJobs(['completed'])
  const tickTimes = done.map((job) => Number(/:(\d+)$/.exec(job.id ?? '')?.[1]))
  assert.equal(new Set(tickTimes).size, tickTimes.length, 'no period ticked twice')
  assert.deepEqual(tickTimes.filter((ms) => ms % TICK_MS !== 0), [], 'every tick on the grid of due times')
  const inWindow = tickTimes.filter((ms) => ms >= observeFrom && ms <= observeTo)
  const periods = Math.floor((observeTo - observeFrom) / TICK_MS)
  t.diagnostic(`${inWindow.length} ticks in ${periods} periods watched, ${done.length} in all: ${tickTimes.sort((a, b) => a - b).map((ms) => (ms - observeFrom) / TICK_MS).join(' ')}`)
  assert.ok(inWindow.length >= periods - 1 && inWindow.length <= periods + 1, `one tick per period: ${inWindow.length} in ${periods}`)

  // Every due alert was enqueued once: one run and one job each.
  const runKeys = await recordedRuns(testDb.db)
  assert.equal(new Set(runKeys).size, 80)
  assert.deepEqual(new Set(runKeys.map((k) => k.split('@')[0])), new Set([...first, ...later]))
  assert.equal(await runs.queue.count(), 80)
})
