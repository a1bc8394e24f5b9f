/**
 * The distributor: at each tick, finds the alerts due by then and hands one job per run to
 * the runs queue, in batches.
 *
 * Exactly once per (alert, due time), by construction:
 * - One statement claims a batch: it locks due alerts (`for update skip locked`, so two
 *   distributors at once take different alerts), moves each one's `next_run_at` past the
 *   tick, and records the run in `alert_runs` (unique per alert and due time). Once it
 *   commits, those alerts are no longer due at this tick: batches are disjoint, and a
 *   second tick for the same period (two schedulers, a retried tick job) finds nothing.
 * - A tick that came late, or after the scheduler was down for several periods, moves
 *   `next_run_at` to the first due time after the tick and records one run, at the latest
 *   due time passed: missed periods are caught up once, not once each.
 * - The jobs are added after the claim commits, with the run's id as job id, and the run is
 *   marked enqueued after that. A distributor that dies in between leaves runs recorded
 *   but not enqueued; every tick first hands those (older than {@link REQUEUE_AFTER_MS})
 *   to the queue again. The same job id twice is one job while it is in the queue, and a
 *   worker handles a run only while it is `queued`, so a repeat costs nothing.
 */
import type { JobsOptions, Queue } from 'bullmq'
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { Logger } from '../platform/logger.ts'

/** What a run job carries. */
export interface RunJobData {
  runId: string
  alertId: string
  /** The due time, ISO 8601. */
  dueAt: string
}

/** The id of a run's job (BullMQ ids may not contain `:` nor be all digits). */
export function runJobId(runId: string): string {
  return `run-${runId}`
}

/** How long a run may wait between its claim and its enqueue mark before a tick enqueues it again, in ms. */
export const REQUEUE_AFTER_MS = 30_000

/** Dependencies of {@link createDistributor}. */
export interface DistributorDeps {
  db: Db
  /** The runs queue. */
  runs: Queue<RunJobData>
  log: Logger
}

/** Options of {@link createDistributor}. */
export interface DistributorOptions {
  /** Alerts claimed and enqueued together. */
  batchSize: number
  /** Options of every run job (attempts, backoff, retention). */
  jobOptions?: JobsOptions
}

/** What one tick did. */
export interface TickResult {
  /** Runs claimed (recorded and enqueued) by this tick. */
  claimed: number
  /** Batches they went in. */
  batches: number
  /** Runs found recorded but not enqueued, enqueued again. */
  requeued: number
}

/** A run claimed in one batch. */
interface ClaimedRun {
  id: string
  alert_id: string
  due_at: Date
}

/** An alert claimed in one batch, with its new run (null when its due time had one already). */
interface ClaimedAlert {
  id: string | null
  alert_id: string
  due_at: Date
}

/** Creates a distributor. */
export function createDistributor(deps: DistributorDeps, options: DistributorOptions) {
  const { db, runs } = deps
  const log = deps.log.child({ component: 'alerts-distributor' })
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new RangeError(`batchSize must be a whole number >= 1 (got ${options.batchSize})`)
  }

  /**
   * Claims up to `batchSize` alerts due at `tick` with ids above `afterId`, moving each
   * one's next run past the tick and recording the run, in one statement.
   */
  async function claimBatch(tick: Date, afterId: string): Promise<ClaimedAlert[]> {
    const { rows } = await sql<ClaimedAlert>`
      with due as (
        select id, next_run_at, frequency_minutes,
          -- whole periods between the due time and the tick: the run is at the last due time passed
          div((extract(epoch from (${tick}::timestamptz - next_run_at)) * 1000)::numeric, frequency_minutes * 60000) as missed
        from alerts
        where status = 'active' and next_run_at <= ${tick}::timestamptz and id > ${afterId}::bigint
        order by id
        limit ${options.batchSize}
        for update skip locked
      ), moved as (
        update alerts a
        set next_run_at = due.next_run_at + make_interval(mins => ((due.missed + 1) * due.frequency_minutes)::integer)
        from due
        where a.id = due.id
        returning a.id, a.next_run_at - make_interval(mins => a.frequency_minutes) as run_at
      ), recorded as (
        insert into alert_runs (alert_id, due_at)
        select id, run_at from moved
        order by id
        on conflict (alert_id, due_at) do nothing
        returning id, alert_id, due_at
      )
      -- every claimed alert, with its run (none when that due time had one already)
      select moved.id as alert_id, moved.run_at as due_at, recorded.id
      from moved left join recorded on recorded.alert_id = moved.id
    `.execute(db)
    return rows
  }

  /** Hands runs to the queue, then marks them enqueued. */
  async function enqueue(claimed: readonly ClaimedRun[]): Promise<void> {
    if (claimed.length === 0) return
    await runs.addBulk(
      claimed.map((run) => ({
        name: 'run',
        data: { runId: String(run.id), alertId: String(run.alert_id), dueAt: run.due_at.toISOString() },
        opts: { ...options.jobOptions, jobId: runJobId(String(run.id)) },
      })),
    )
    await db
      .updateTable('alert_runs')
      .set({ enqueued_at: sql<Date>`now()` })
      .where(
        'id',
        'in',
        claimed.map((run) => String(run.id)),
      )
      .where('enqueued_at', 'is', null)
      .execute()
  }

  /** Enqueues again the runs a distributor recorded and died before enqueueing. */
  async function requeueLost(): Promise<number> {
    let total = 0
    for (;;) {
      const lost = await db
        .selectFrom('alert_runs')
        .select(['id', 'alert_id', 'due_at'])
        .where('status', '=', 'queued')
        .where('enqueued_at', 'is', null)
        .where('created_at', '<', sql<Date>`now() - ${REQUEUE_AFTER_MS}::double precision * interval '1 millisecond'`)
        .orderBy('created_at')
        .limit(options.batchSize)
        .execute()
      if (lost.length === 0) return total
      await enqueue(lost)
      total += lost.length
      if (lost.length < options.batchSize) return total
    }
  }

  return {
    /**
     * Runs one tick at `tick` (the scheduler's clock; tests pass a simulated one): every
     * alert due at or before it gets one run, in disjoint batches.
     */
    async tick(tick: Date): Promise<TickResult> {
      const requeued = await requeueLost()
      if (requeued > 0) log.warn({ requeued }, 'enqueued runs a distributor had recorded but not enqueued')
      let claimed = 0
      let batches = 0
      let afterId = '0'
      for (;;) {
        const batch = await claimBatch(tick, afterId)
        if (batch.length === 0) break
        const recorded = batch.filter((run): run is ClaimedRun => run.id !== null)
        await enqueue(recorded)
        claimed += recorded.length
        batches++
        afterId = batch.reduce((max, run) => (BigInt(run.alert_id) > BigInt(max) ? String(run.alert_id) : max), afterId)
        if (batch.length < options.batchSize) break
      }
      if (claimed > 0) log.info({ tick: tick.toISOString(), claimed, batches }, 'alerts due: runs enqueued')
      return { claimed, batches, requeued }
    },
  }
}

/** A distributor. */
export type Distributor = ReturnType<typeof createDistributor>
