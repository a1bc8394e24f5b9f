/**
 * Two hours of scheduling, simulated: 10,000 alerts over the three frequencies, two
 * distributors ticking at once (two schedulers) every 2 simulated minutes and two BullMQ
 * worker processes sharing the runs queue. Each alert must run at each of its due times exactly
 * once, and a scheduler outage of 10 minutes must be caught up once, not once per missed
 * tick. The expected runs come from an independent model of the grid.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'
import { sql } from 'kysely'
import { createDistributor, type RunJobData } from '../../src/alerts/distributor.ts'
import { RUNS_QUEUE } from '../../src/alerts/queues.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { type OpenQueue, openQueue } from '../../src/platform/queues.ts'
import { createAlertUsers, insertAlerts, recordedRuns, testQueueConnection } from '../helpers/alerts.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testConfig, waitFor } from '../helpers/infra.ts'

const MINUTE = 60_000
const TICK = 2 * MINUTE
const log = createLogger({ level: 'silent', pretty: false })
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0)
const END = T0 + 120 * MINUTE
/** The schedulers are down from after the tick at +40 until the tick at +52. */
const DOWN_FROM = T0 + 40 * MINUTE
const DOWN_UNTIL = T0 + 52 * MINUTE

/** The ticks that happen: every 2 minutes from T0 to END, but none while down. */
const ticks: number[] = []
for (let t = T0; t <= END; t += TICK) if (t <= DOWN_FROM || t >= DOWN_UNTIL) ticks.push(t)

/** The model: the runs an alert first due at `first` every `frequency` minutes gets from `ticks`. */
function expectedRuns(first: number, frequency: number): number[] {
  const period = frequency * MINUTE
  const runs: number[] = []
  let next = first
  for (const t of ticks) {
    if (next > t) continue
    let last = next
    while (last + period <= t) last += period
    runs.push(last)
    next = last + period
  }
  return runs
}

describe('alerts schedule, simulated for 2 hours', () => {
  let testDb: TestDb
  let queues: Array<OpenQueue<RunJobData>> = []
  let workers: ChildProcess[] = []

  before(async () => {
    testDb = await openTestDb()
    await createAlertUsers(testDb.db)
  })
  after(async () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL')
    for (const q of queues) {
      await q.queue.obliterate({ force: true }).catch(() => {})
      await q.close()
    }
    await testDb.close()
  })

  test('10,000 alerts, two schedulers, two workers: each due time runs once, an outage is caught up once', async () => {
    const frequencies = [2, 10, 30] as const
    // First due times spread over the first period of each alert, on the tick grid.
    const fixtures = Array.from({ length: 10_000 }, (_, i) => {
      const frequency = frequencies[i % 3]!
      const offset = ((i * 7919) % (frequency / 2)) * TICK
      return { frequency, nextRunAt: new Date(T0 + offset) }
    })
    const ids = await insertAlerts(testDb.db, fixtures)
    const expected = new Map<string, number[]>()
    ids.forEach((id, i) => expected.set(id, expectedRuns(fixtures[i]!.nextRunAt.getTime(), fixtures[i]!.frequency)))

    const connection = testQueueConnection()
    queues = [openQueue<RunJobData>(RUNS_QUEUE, connection), openQueue<RunJobData>(RUNS_QUEUE, connection)]
    const distributors = queues.map((q) => createDistributor({ db: testDb.db, runs: q.queue, log }, { batchSize: 500, jobOptions: { removeOnComplete: true } }))

    // Two worker instances, each a process of its own (test/helpers/alerts-sim-worker.ts).
    workers = [0, 1].map(() =>
      fork(fileURLToPath(new URL('../helpers/alerts-sim-worker.ts', import.meta.url)), {
        env: {
          ...process.env,
          SIM_REDIS_URL: connection.url,
          SIM_QUEUE_PREFIX: connection.prefix,
          SIM_DATABASE_URL: testConfig().DATABASE_URL,
          SIM_SCHEMA: testDb.schema,
          SIM_CONCURRENCY: '100',
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    )
    await Promise.all(workers.map((w) => once(w, 'message')))
    const stored = async () => (await sql<{ n: number }>`select count(*)::int as n from alert_runs where status = 'done'`.execute(testDb.db)).rows[0]?.n ?? 0

    for (const t of ticks) {
      // Both schedulers' distributors tick for the same period at once.
      await Promise.all(distributors.map((d) => d.tick(new Date(t))))
    }
    const total = [...expected.values()].reduce((sum, runs) => sum + runs.length, 0)
    await waitFor(async () => (await stored()) === total, { timeoutMs: 300_000, intervalMs: 200, what: `${total} runs stored` })
    // Each worker's count of how often it handled each run.
    const handled = new Map<string, number>()
    for (const worker of workers) {
      const reply = once(worker, 'message')
      worker.send('report')
      const [{ handled: counts }] = (await reply) as [{ handled: Array<[string, number]> }]
      for (const [runId, n] of counts) handled.set(runId, (handled.get(runId) ?? 0) + n)
    }

    const runs = await recordedRuns(testDb.db)
    assert.equal(runs.length, total, 'one run row per expected (alert, due time)')
    const got = new Map<string, number[]>()
    for (const run of runs) {
      const [alertId = '', due = ''] = run.split('@')
      got.set(alertId, [...(got.get(alertId) ?? []), Number(due)])
    }
    let mismatches = 0
    for (const [id, want] of expected) {
      const have = (got.get(id) ?? []).sort((a, b) => a - b)
      if (JSON.stringify(have) !== JSON.stringify(want)) mismatches++
    }
    assert.equal(mismatches, 0, 'every alert ran exactly at its due times')
    assert.equal([...handled.values()].filter((n) => n > 1).length, 0, 'no run was handled twice')
    assert.equal(handled.size, total)
    // The outage: a 2-minute alert first due at T0 ran at +40, then once at +52 (not at +42 ... +50), then at +54.
    const twoMinute = ids.find((_, i) => fixtures[i]!.frequency === 2 && fixtures[i]!.nextRunAt.getTime() === T0)!
    const around = expected.get(twoMinute)!.filter((t) => t >= T0 + 40 * MINUTE && t <= T0 + 54 * MINUTE)
    assert.deepEqual(around, [T0 + 40 * MINUTE, T0 + 52 * MINUTE, T0 + 54 * MINUTE])
    const notDone = await sql<{ n: string }>`select count(*)::text as n from alert_runs where status <> 'done'`.execute(testDb.db)
    assert.equal(notDone.rows[0]?.n, '0')
  })
})
