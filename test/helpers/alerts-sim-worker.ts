/**
 * One simulated alerts worker instance, as its own process, for the schedule simulation
 * (`test/alerts/schedule.simulation.test.ts`): a BullMQ worker of the runs queue that
 * stores each run the way the real job does (only while it is queued), marking the runs
 * that end within a few milliseconds in one statement, so that the simulation measures the
 * scheduling rather than PostgreSQL's commit rate. It counts how often it handled each run
 * and sends the counts to its parent when asked (IPC message `report`), then exits.
 *
 * Environment: SIM_REDIS_URL, SIM_QUEUE_PREFIX, SIM_DATABASE_URL, SIM_SCHEMA, SIM_CONCURRENCY.
 */
import { sql } from 'kysely'
import type { RunJobData } from '../../src/alerts/distributor.ts'
import { RUNS_QUEUE } from '../../src/alerts/queues.ts'
import type { Database } from '../../src/database.ts'
import { closeDb, createDb } from '../../src/platform/db/index.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { openWorker } from '../../src/platform/queues.ts'

const env = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

const db = createDb<Database>({ url: env('SIM_DATABASE_URL'), schema: env('SIM_SCHEMA'), max: 4 })
const handled = new Map<string, number>()
let pending: Array<{ runId: string; done: PromiseWithResolvers<void> }> = []
let flushing: Promise<void> | undefined

async function flush(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 5))
  while (pending.length > 0) {
    const round = pending
    pending = []
    try {
      const ids = round.map((p) => p.runId)
      await sql`update alert_runs set status = 'done', finished_at = now() where id = any(${ids}::bigint[]) and status = 'queued'`.execute(db)
      for (const p of round) p.done.resolve()
    } catch (err) {
      for (const p of round) p.done.reject(err)
    }
  }
  flushing = undefined
}

const worker = openWorker<RunJobData>(
  RUNS_QUEUE,
  async (job) => {
    handled.set(job.data.runId, (handled.get(job.data.runId) ?? 0) + 1)
    const done = Promise.withResolvers<void>()
    pending.push({ runId: job.data.runId, done })
    flushing ??= flush()
    await done.promise
  },
  { url: env('SIM_REDIS_URL'), prefix: env('SIM_QUEUE_PREFIX'), log: createLogger({ level: 'warn', pretty: false }) },
  { concurrency: Number(env('SIM_CONCURRENCY')) },
)

process.on('message', (message) => {
  if (message !== 'report') return
  void (async () => {
    await worker.close()
    await closeDb(db)
    process.send?.({ handled: [...handled] }, () => process.exit(0))
  })()
})
process.send?.('ready')
