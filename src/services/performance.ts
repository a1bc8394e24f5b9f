/** `bourse performance [--once]` (seed step 2): the performance metric of changed stocks, on all cores. */
import { type CycleResult, createPerformanceService, formatCycle } from '../market/performance.service.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { intOption } from '../platform/command.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'performance',
    usage: '[--once] [--workers N] [--cost-ms N] [--interval-ms N]',
    description:
      'Every interval, computes the performance metric (percent change from the first to the last price)\n' +
      'of each stock whose history changed since its last computation, on a pool of worker threads, and\n' +
      'stores it in the stock JSON. Instances may run side by side: a change is computed once.',
    options: {
      once: { type: 'boolean', default: false },
      workers: { type: 'string' },
      'cost-ms': { type: 'string' },
      'interval-ms': { type: 'string' },
    },
    help: {
      once: 'Run one cycle, then exit (non-zero when a computation failed)',
      workers: 'Worker threads (default: PERFORMANCE_WORKERS, the number of cores)',
      'cost-ms': 'Simulated cost of one computation in ms (default: PERFORMANCE_COST_MS, 3000)',
      'interval-ms': 'Time between the starts of two cycles in ms (default: PERFORMANCE_INTERVAL_MS, 60000)',
    },
  },
  daemon: true,
  parse: ({ values }, config) => ({
    once: values.once,
    workers: intOption('workers', values.workers, 1, 256) ?? config.PERFORMANCE_WORKERS,
    costMs: intOption('cost-ms', values['cost-ms'], 0, 600_000) ?? config.PERFORMANCE_COST_MS,
    intervalMs: intOption('interval-ms', values['interval-ms'], 100, 86_400_000) ?? config.PERFORMANCE_INTERVAL_MS,
  }),
  needs: () => ({ redis: {} }),
  async start({ config, log, lifecycle, redis, metrics }, { once, ...options }) {
    const cycles = metrics.counter('bourse_performance_cycles_total', 'Performance cycles run')
    const computed = metrics.counter('bourse_performance_computations_total', 'Performance computations stored')
    let last: CycleResult | undefined
    let count = 0
    const service = createPerformanceService({
      history: createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS }),
      log,
      ...options,
      onCycle: (result) => {
        last = result
        count++
        cycles.inc()
        computed.inc(result.computed.filter((c) => c.stored).length)
        process.stdout.write(`${formatCycle(result)}\n`)
      },
    })
    // Registered after Redis, so it closes first: the running cycle still stores its results.
    lifecycle.onClose('performance service', () => service.close())
    if (once) {
      const result = await service.runCycle()
      process.stdout.write(`${formatCycle(result)}\n`)
      return result.failed.length > 0 ? 1 : 0
    }
    service.start(lifecycle.signal)
    return {
      status: () => ({
        cycles: count,
        ...(last && { last: { claimed: last.claimed, failed: last.failed.length, ms: Math.round(last.durationMs), backlog: last.backlog } }),
      }),
    }
  },
})
