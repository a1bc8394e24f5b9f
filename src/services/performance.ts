/** `bourse performance [--once]` (seed step 2): the performance metric of changed stocks, on all cores. */
import { createPerformanceService, formatCycle } from '../market/performance.service.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { closeRedis, createRedis } from '../platform/redis.ts'
import { createServiceContext, intOption, parseCommand, runCommand } from './context.ts'

const spec = {
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
} as const

/** Runs the command; resolves to the exit code. */
export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const workers = intOption('workers', args.values.workers, 1, 256)
    const costMs = intOption('cost-ms', args.values['cost-ms'], 0, 600_000)
    const intervalMs = intOption('interval-ms', args.values['interval-ms'], 100, 86_400_000)
    const { config, log, lifecycle } = createServiceContext('performance')
    const redis = createRedis(config.REDIS_URL, log, 'performance')
    lifecycle.onClose('redis', () => closeRedis(redis))
    const service = createPerformanceService({
      history: createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS }),
      log,
      workers: workers ?? config.PERFORMANCE_WORKERS,
      costMs: costMs ?? config.PERFORMANCE_COST_MS,
      intervalMs: intervalMs ?? config.PERFORMANCE_INTERVAL_MS,
      onCycle: (result) => process.stdout.write(`${formatCycle(result)}\n`),
    })
    // Registered after Redis, so it closes first: the running cycle still stores its results.
    lifecycle.onClose('performance service', () => service.close())

    if (!args.values.once) {
      service.start(lifecycle.signal)
      await lifecycle.stopping
      await lifecycle.shutdown()
      return 0
    }
    try {
      const result = await service.runCycle()
      process.stdout.write(`${formatCycle(result)}\n`)
      return result.failed.length > 0 ? 1 : 0
    } catch (err) {
      log.error({ err }, 'performance cycle failed')
      return 1
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
