/**
 * The performance worker, run by a piscina pool on its own thread. It simulates the
 * seed's expensive computation (`time.sleep(3)`) by keeping its thread busy for
 * `costMs`, then computes the real metric.
 */
import { percentChange } from './performance.metric.ts'

/** One computation handed to a worker. */
export interface PerformanceTask {
  /** Stock key (`stock1`, ...). */
  stock: string
  /** The stock's price list, as in the contract JSON. */
  prices: Array<number | ''>
  /** Simulated cost of the computation, in ms. */
  costMs: number
}

/** What a worker returns for one task. */
export interface PerformanceResult {
  /** Stock key of the task. */
  stock: string
  /** The computed metric (see {@link percentChange}). */
  performance: number
  /** When the computation started, in epoch ms (comparable across threads). */
  startedAt: number
  /** When the computation finished, in epoch ms (comparable across threads). */
  finishedAt: number
}

const blocker = new Int32Array(new SharedArrayBuffer(4))

// timeOrigin is per thread; adding it gives a wall-clock instant every thread agrees on.
const now = () => performance.timeOrigin + performance.now()

/**
 * Computes the performance of one stock. The simulated cost blocks the thread (as a CPU
 * bound computation would) rather than waiting on a timer, so a worker never runs two
 * tasks at once and the pool size alone bounds the parallelism.
 */
export default function computePerformance(task: PerformanceTask): PerformanceResult {
  const startedAt = now()
  if (task.costMs > 0) Atomics.wait(blocker, 0, 0, task.costMs)
  const value = percentChange(task.prices)
  return { stock: task.stock, performance: value, startedAt, finishedAt: now() }
}
