/** `bourse alerts-scheduler`: ticks every ALERTS_TICK_MS and hands the due alerts' runs to the alerts queue. */
import { createDistributor, type RunJobData } from '../alerts/distributor.ts'
import { assertTickFitsFrequencies } from '../alerts/schedule.ts'
import { RUNS_QUEUE, runJobOptions, TICK_SCHEDULER_ID, TICKS_QUEUE } from '../alerts/queues.ts'
import { intOption, UsageError } from '../platform/command.ts'
import { openQueue, openWorker, type QueueConnection } from '../platform/queues.ts'
import { defineService } from './shape.ts'

/** The time a job scheduler's job was scheduled for: BullMQ names it `repeat:<scheduler>:<ms>`. */
function scheduledAt(jobId: string | undefined): number {
  const match = /:(\d+)$/.exec(jobId ?? '')
  return match ? Number(match[1]) : 0
}

export const { run } = defineService({
  spec: {
    name: 'alerts-scheduler',
    usage: '[--batch-size N] [--instance-id ID]',
    description:
      'Product alerts: a BullMQ job scheduler ticks every ALERTS_TICK_MS (2 minutes). Each tick claims the\n' +
      'alerts due by then in disjoint batches (moving each one\'s next run in the same statement that records\n' +
      'the run) and adds one job per run to the `alerts` queue for `bourse alerts-worker`. A tick missed while\n' +
      'no scheduler ran is caught up once. Instances may run side by side: one tick per period.',
    options: { 'batch-size': { type: 'string' } },
    help: { 'batch-size': 'Alerts claimed and enqueued together (default: ALERTS_BATCH_SIZE, 500)' },
  },
  daemon: true,
  parse: ({ values }, config) => {
    try {
      assertTickFitsFrequencies(config.ALERTS_TICK_MS)
    } catch (err) {
      throw new UsageError(`ALERTS_TICK_MS: ${(err as Error).message}`)
    }
    return { batchSize: intOption('batch-size', values['batch-size'], 1, 100_000) ?? config.ALERTS_BATCH_SIZE }
  },
  needs: () => ({ db: { max: 4 } }),
  async start({ config, log, lifecycle, db }, { batchSize }) {
    const connection: QueueConnection = { url: config.REDIS_URL, prefix: config.QUEUE_PREFIX, log }
    const runs = openQueue<RunJobData>(RUNS_QUEUE, connection)
    lifecycle.onClose('runs queue', () => runs.close())
    const ticks = openQueue(TICKS_QUEUE, connection, { removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } })
    lifecycle.onClose('ticks queue', () => ticks.close())
    const distributor = createDistributor({ db, runs: runs.queue, log }, { batchSize, jobOptions: runJobOptions(config) })
    const tickMs = config.ALERTS_TICK_MS
    const stats = { ticks: 0, claimed: 0, requeued: 0 }
    let lastTick: string | undefined
    // Upserting the same scheduler id is idempotent: every instance does it, one schedule
    // results. The first tick is the next one on the grid (due times are multiples of the
    // tick), not now: BullMQ's \`every\` counts from its first run.
    const firstTick = new Date(Math.ceil(Date.now() / tickMs) * tickMs)
    await ticks.queue.upsertJobScheduler(TICK_SCHEDULER_ID, { every: tickMs, startDate: firstTick }, { name: 'tick', data: {} })
    const worker = openWorker(
      TICKS_QUEUE,
      async (job) => {
        // The tick's own time (on the grid: a scheduler job's id ends with it), or the last
        // grid time passed when the job runs late: what is due by then runs now.
        const now = Date.now()
        const tick = new Date(Math.max(scheduledAt(job.id), Math.floor(now / tickMs) * tickMs))
        const result = await distributor.tick(tick)
        stats.ticks++
        stats.claimed += result.claimed
        stats.requeued += result.requeued
        lastTick = tick.toISOString()
        return result
      },
      connection,
      { concurrency: 1, closeTimeoutMs: 60_000 },
    )
    lifecycle.onClose('tick worker', () => worker.close())
    return { stats, status: () => ({ lastTick, tickMs }) }
  },
})
