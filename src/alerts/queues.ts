/** The BullMQ queues of the alerts domain (the queue board lists them). */

/** The scheduler's ticks: one job per period, from the job scheduler {@link TICK_SCHEDULER_ID}. */
export const TICKS_QUEUE = 'alerts-ticks'
/** The runs: one job per (alert, due time), handled by `bourse alerts-worker`. */
export const RUNS_QUEUE = 'alerts'
/** The job scheduler's id (upserting it again is idempotent). */
export const TICK_SCHEDULER_ID = 'alerts-tick'
/** Every queue of the domain. */
export const ALERT_QUEUES = [TICKS_QUEUE, RUNS_QUEUE] as const

/** Settings {@link runJobOptions} reads. */
export interface RunJobSettings {
  ALERTS_JOB_ATTEMPTS: number
  ALERTS_RETRY_BASE_MS: number
}

/**
 * The options of every run job: retried with exponential backoff, kept an hour once done
 * (the board shows recent work), and a week once failed (the board's and the API's
 * failures).
 */
export function runJobOptions(settings: RunJobSettings) {
  return {
    attempts: settings.ALERTS_JOB_ATTEMPTS,
    backoff: { type: 'exponential', delay: settings.ALERTS_RETRY_BASE_MS },
    removeOnComplete: { age: 3600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3600 },
  }
}
