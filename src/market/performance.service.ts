/**
 * The performance service (seed step 2): every interval it claims the stocks whose
 * history changed since their last computation, computes their metric on a pool of
 * worker threads (at most one computation per thread at a time) and stores each result
 * in the stock's contract JSON as soon as it is ready. The claim is a lease in Redis, so
 * instances running side by side share the work and never compute one change twice.
 */
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Piscina } from 'piscina'
import { runCloseSteps } from '../platform/lifecycle.ts'
import type { Logger } from '../platform/logger.ts'
import type { PerformanceResult, PerformanceTask } from './performance.worker.ts'
import type { ClaimedStock, StockHistoryRepository } from './stock-history.repository.ts'

/** The worker threads computing performance. */
export interface PerformancePool {
  /** Runs one computation on a free worker (queued while every worker is busy). */
  run(task: PerformanceTask): Promise<PerformanceResult>
  /** Stops every worker. */
  destroy(): Promise<void>
}

/** Builds the pool of a service; tests swap in a wrapper around {@link createPerformancePool}. */
export type PerformancePoolFactory = (options: { workers: number; log: Logger }) => PerformancePool

/** A piscina pool of exactly `workers` threads running `performance.worker.ts`. */
export function createPerformancePool(options: { workers: number; log: Logger }): PerformancePool {
  const pool = new Piscina<PerformanceTask, PerformanceResult>({
    filename: new URL('./performance.worker.ts', import.meta.url).href,
    minThreads: options.workers,
    maxThreads: options.workers,
    concurrentTasksPerWorker: 1,
  })
  pool.on('error', (err: unknown) => options.log.error({ err }, 'performance worker failed'))
  return { run: (task) => pool.run(task), destroy: () => pool.destroy() }
}

/** Dependencies and options of {@link createPerformanceService}. */
export interface PerformanceServiceDeps {
  /** The stock histories (claims, prices, results). */
  history: StockHistoryRepository
  /** Logger; the service takes a child with its owner id. */
  log: Logger
  /** Worker threads, hence computations running at once. */
  workers: number
  /** Simulated cost of one computation, in ms. */
  costMs: number
  /** Time from the start of one cycle to the start of the next, in ms. */
  intervalMs: number
  /** Lease owner id, unique per instance. @defaultValue `hostname:pid:random` */
  owner?: string
  /** Most stocks one cycle claims; a full claim starts the next cycle at once. @defaultValue workers * 16 */
  maxClaim?: number
  /** Lease time beyond the expected duration of the claimed computations, in ms. @defaultValue 30000 */
  leaseMarginMs?: number
  /** Builds the worker pool. @defaultValue {@link createPerformancePool} */
  pool?: PerformancePoolFactory
  /** Called after every scheduled cycle (not after a direct {@link PerformanceService.runCycle}). */
  onCycle?: (result: CycleResult) => void
}

/** One computation of a cycle. */
export interface StockComputation {
  /** Stock key. */
  stock: string
  /** History version the computation read (marked done when stored). */
  version: number
  /** The computed metric. */
  performance: number
  /** When the worker started, in epoch ms. */
  startedAt: number
  /** When the worker finished, in epoch ms. */
  finishedAt: number
  /** False when the lease was lost before the result was stored (the result was dropped). */
  stored: boolean
}

/** What one cycle did. */
export interface CycleResult {
  /** Lease owner id of the instance. */
  owner: string
  /** Stocks claimed. */
  claimed: number
  /** Computations that finished, in the order they finished. */
  computed: StockComputation[]
  /** Stocks whose computation failed; their lease expires and they are claimed again. */
  failed: Array<{ stock: string; error: string }>
  /** Stocks claimed but not started because the service closed; their claims are released. */
  abandoned: string[]
  /** True when the claim was full, so more changed stocks may be waiting. */
  backlog: boolean
  /** Duration of the cycle, in ms. */
  durationMs: number
}

/** The performance service of one process. */
export interface PerformanceService {
  /** This instance's lease owner id. */
  readonly owner: string
  /** Runs one cycle now (after the running one, if any: cycles never overlap). */
  runCycle(): Promise<CycleResult>
  /** Runs a cycle now, then one every interval, until `signal` aborts (as {@link close} does) or the service closes. */
  start(signal: AbortSignal): void
  /**
   * Stops scheduling, lets the running computations finish (claimed stocks not started yet
   * are released), then stops the workers; later calls return the same promise.
   */
  close(): Promise<void>
}

/** A unique lease owner id for this process. */
export function performanceOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
}

/** One line describing a cycle, for the command's output. */
export function formatCycle(result: CycleResult): string {
  const stored = result.computed.filter((c) => c.stored).length
  const lost = result.computed.length - stored
  const counts = [
    `${result.claimed} changed stocks claimed`,
    `${stored} stored`,
    `${lost} lost leases`,
    `${result.failed.length} failed`,
    `${result.abandoned.length} abandoned`,
  ]
  const more = result.backlog ? ' (more waiting)' : ''
  return `performance: ${counts.join(', ')} in ${Math.round(result.durationMs)} ms${more}`
}

/** Creates the service; its worker threads start now. */
export function createPerformanceService(deps: PerformanceServiceDeps): PerformanceService {
  const { history, workers, costMs, intervalMs } = deps
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError('workers must be a whole number >= 1')
  const owner = deps.owner ?? performanceOwnerId()
  const log = deps.log.child({ owner })
  const maxClaim = deps.maxClaim ?? workers * 16
  const leaseMarginMs = deps.leaseMarginMs ?? 30_000
  const pool = (deps.pool ?? createPerformancePool)({ workers, log })
  const stop = new AbortController()
  let tail: Promise<unknown> = Promise.resolve()
  let loop: Promise<void> | undefined
  let closing: Promise<void> | undefined

  async function compute(claim: ClaimedStock): Promise<StockComputation> {
    const { prices, version } = await history.readPrices(claim.stock)
    const result = await pool.run({ stock: claim.stock, prices, costMs })
    const stored = await history.completePerformance(claim.stock, owner, result.performance, version)
    if (!stored) log.warn({ stock: claim.stock, version }, 'performance lease lost, result dropped')
    return { ...result, version, stored }
  }

  async function cycle(): Promise<CycleResult> {
    const began = performance.now()
    const limit = Math.min((await history.listStocks()).length, maxClaim)
    const result: CycleResult = {
      owner,
      claimed: 0,
      computed: [],
      failed: [],
      abandoned: [],
      backlog: false,
      durationMs: 0,
    }
    if (limit > 0) {
      // One claim per cycle, so a stock is computed at most once per cycle: a tick that
      // lands during its computation keeps it changed (complete-performance marks done
      // the version its prices were read at) and the next claim, in the next cycle, takes it. `workers`
      // lanes take the claimed stocks in turn, so the last one finishes after about
      // ceil(limit / workers) costs; the lease covers that plus a margin, and only once
      // it expires may another instance claim the same change.
      const leaseMs = Math.ceil(limit / workers) * costMs + leaseMarginMs
      const claims = await history.claimChanged(owner, leaseMs, limit)
      result.claimed = claims.length
      result.backlog = limit === maxClaim && claims.length === limit
      const lane = async () => {
        for (let claim = claims.shift(); claim; claim = claims.shift()) {
          // Closing: finish what runs, release the rest (after the lanes end).
          if (stop.signal.aborted) {
            result.abandoned.push(claim.stock)
            continue
          }
          try {
            result.computed.push(await compute(claim))
          } catch (err) {
            log.error({ err, stock: claim.stock }, 'performance computation failed')
            result.failed.push({ stock: claim.stock, error: (err as Error).message })
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(workers, claims.length) }, lane))
      if (result.abandoned.length > 0) {
        // Closing: give the claims back so another instance can take them at once.
        const released = await history.releaseClaims(owner, result.abandoned)
        log.info({ stocks: result.abandoned, released }, 'closing: released claimed stocks not started')
      }
    }
    result.durationMs = performance.now() - began
    const summary = {
      claimed: result.claimed,
      stored: result.computed.filter((c) => c.stored).length,
      failed: result.failed.length,
      ms: Math.round(result.durationMs),
    }
    if (result.claimed > 0) log.info(summary, 'performance cycle')
    else log.debug(summary, 'performance cycle')
    return result
  }

  function runCycle(): Promise<CycleResult> {
    if (closing) return Promise.reject(new Error('performance service is closed'))
    const next = tail.then(cycle)
    tail = next.catch(() => {})
    return next
  }

  async function schedule(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const began = Date.now()
      let backlog = false
      try {
        const result = await runCycle()
        backlog = result.backlog
        deps.onCycle?.(result)
      } catch (err) {
        if (!signal.aborted) log.error({ err }, 'performance cycle failed')
      }
      // Fixed rate: a cycle longer than the interval is followed by the next at once.
      const wait = backlog ? 0 : intervalMs - (Date.now() - began)
      if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => {})
    }
  }

  return {
    owner,
    runCycle,
    start(signal) {
      if (closing) throw new Error('performance service is closed')
      if (loop) throw new Error('performance service already started')
      // The caller's signal (the process shutting down) stops the running cycle too.
      if (signal.aborted) stop.abort()
      else signal.addEventListener('abort', () => stop.abort(), { once: true, signal: stop.signal })
      loop = schedule(stop.signal)
    },
    close() {
      closing ??= (async () => {
        stop.abort()
        await runCloseSteps(
          [
            ['scheduler', () => loop],
            ['running cycle', () => tail],
            ['worker pool', () => pool.destroy()],
          ],
          log,
          'performance service close step failed',
        )
      })()
      return closing
    },
  }
}
