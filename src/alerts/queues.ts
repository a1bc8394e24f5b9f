/** The BullMQ queues of the alerts domain (the queue board lists them). */

/** The scheduler's ticks: one job per period, from the job scheduler {@link TICK_SCHEDULER_ID}. */
export const TICKS_QUEUE = 'alerts-ticks'
/** The runs: one job per (alert, due time), handled by `bourse alerts-worker`. */
export const RUNS_QUEUE = 'alerts'
/** The job scheduler's id (upserting it again is idempotent). */
export const TICK_SCHEDULER_ID = 'alerts-tick'
/** Every queue of the domain. */
export const ALERT_QUEUES = [TICKS_QUEUE, RUNS_QUEUE] as const
