/**
 * BullMQ queues and workers, made the same way for every domain: their own Redis
 * connections (BullMQ needs `maxRetriesPerRequest: null`, and a worker blocks one), one
 * key prefix (`QUEUE_PREFIX`, so tests and deployments can share a Redis), errors logged
 * instead of thrown at random, and a bounded close: `worker.close()` waits for the jobs in
 * flight without a timeout, so past `timeoutMs` it is forced (the jobs then come back as
 * stalled and run again, which job handlers must tolerate).
 */
import { type Job, type JobsOptions, Queue, Worker, type WorkerOptions } from 'bullmq'
import { Redis } from 'ioredis'
import type { Logger } from './logger.ts'

/** Where the queues live. */
export interface QueueConnection {
  /** Redis URL (`REDIS_URL`). */
  url: string
  /** Prefix of every key BullMQ writes (`QUEUE_PREFIX`). */
  prefix: string
  /** Logger for connection and background errors. */
  log: Logger
}

/** A Redis connection as BullMQ needs one; BullMQ does not close connections it was given, the caller does. */
function bullConnection(connection: QueueConnection, name: string): Redis {
  const redis = new Redis(connection.url, { connectionName: name, maxRetriesPerRequest: null, enableReadyCheck: false })
  redis.on('error', (err) => connection.log.warn({ err, connection: name }, 'queue redis connection error'))
  return redis
}

/** A queue and the way to close it with its connection. */
export interface OpenQueue<T> {
  queue: Queue<T>
  /** Closes the queue, then its connection; idempotent. */
  close(): Promise<void>
}

/** Opens queue `name` (adding jobs, reading its state). */
export function openQueue<T = unknown>(
  name: string,
  connection: QueueConnection,
  defaultJobOptions?: JobsOptions,
): OpenQueue<T> {
  const redis = bullConnection(connection, `queue:${name}`)
  const queue = new Queue<T>(name, {
    connection: redis,
    prefix: connection.prefix,
    ...(defaultJobOptions && { defaultJobOptions }),
  })
  queue.on('error', (err) => connection.log.error({ err, queue: name }, 'queue error'))
  let closing: Promise<void> | undefined
  return {
    queue,
    close: () =>
      (closing ??= (async () => {
        try {
          await queue.close()
        } finally {
          redis.disconnect()
        }
      })()),
  }
}

/** Options of {@link openWorker}. */
export interface OpenWorkerOptions extends Pick<WorkerOptions, 'concurrency' | 'limiter' | 'lockDuration' | 'stalledInterval' | 'maxStalledCount' | 'autorun'> {
  /** Longest {@link OpenWorker.close} waits for the jobs in flight before forcing, in ms. @defaultValue 30000 */
  closeTimeoutMs?: number
}

/** A worker and the way to close it with its connection. */
export interface OpenWorker<T> {
  worker: Worker<T>
  /** Stops taking jobs, waits up to `closeTimeoutMs` for those in flight, then closes its connection; idempotent. */
  close(): Promise<void>
}

/** Starts a worker of queue `name` running `processor` for each job. */
export function openWorker<T = unknown, R = unknown>(
  name: string,
  processor: (job: Job<T, R>, token?: string) => Promise<R>,
  connection: QueueConnection,
  options: OpenWorkerOptions = {},
): OpenWorker<T> {
  const { closeTimeoutMs = 30_000, ...workerOptions } = options
  const redis = bullConnection(connection, `worker:${name}`)
  const worker = new Worker<T, R>(name, processor, { connection: redis, prefix: connection.prefix, ...workerOptions })
  worker.on('error', (err) => connection.log.error({ err, queue: name }, 'queue worker error'))
  let closing: Promise<void> | undefined
  return {
    worker: worker as unknown as Worker<T>,
    close: () =>
      (closing ??= (async () => {
        const graceful = worker.close()
        let timer: NodeJS.Timeout | undefined
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), closeTimeoutMs)
        })
        try {
          if ((await Promise.race([graceful.then(() => 'closed' as const), timedOut])) === 'timeout') {
            connection.log.warn({ queue: name, closeTimeoutMs }, 'jobs still running at the close timeout: forcing the worker closed')
            await worker.close(true)
          }
        } finally {
          clearTimeout(timer)
          redis.disconnect()
        }
      })()),
  }
}
