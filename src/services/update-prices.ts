/** `bourse update-prices --csv FILE` (seed step 1): a price CSV straight into Redis. */
import { readPriceCsv } from '../market/price-csv.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import type { Tick } from '../market/tick.ts'
import { intOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'update-prices',
  usage: '--csv FILE',
  description:
    'Reads a price CSV (Time,Stock,Price) and appends each row to its stock history in Redis.\n' +
    'Bad lines are reported with their line number and skipped. Replaying a file changes nothing.',
  options: {
    csv: { type: 'string' },
    'batch-size': { type: 'string', default: '5000' },
  },
  help: { csv: 'The price CSV file', 'batch-size': 'Rows written in one atomic Redis step' },
} as const

export const { run } = defineService({
  spec,
  parse: ({ values }) => {
    if (!values.csv) throw new UsageError('update-prices needs --csv FILE')
    return { file: values.csv, batchSize: intOption('batch-size', values['batch-size'], 1, 100_000)! }
  },
  needs: () => ({ redis: {} }),
  async start({ config, lifecycle, redis }, { file, batchSize }) {
    const history = createStockHistoryRepository(redis, {
      materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS,
      tickStreamMaxLen: config.MARKET_STREAM_MAX_LEN,
    })
    let batch: Tick[] = []
    let rows = 0
    let bad = 0
    let appended = 0
    let updated = 0
    const write = async () => {
      const result = await history.applyTicks(batch)
      appended += result.appended
      updated += result.updated
      batch = []
    }
    const load = async () => {
      for await (const row of readPriceCsv(file)) {
        if (lifecycle.signal.aborted) break
        if ('error' in row) {
          bad++
          process.stderr.write(`${file}: ${row.error} (skipped)\n`)
          continue
        }
        rows++
        batch.push(row.tick)
        if (batch.length >= batchSize) await write()
      }
      if (batch.length > 0) await write()
      await history.flush()
    }
    // Registered after Redis, so a shutdown lets the batch in flight finish first.
    const loading = load()
    lifecycle.onClose('load', () => loading.catch(() => {}))
    try {
      await loading
    } catch (err) {
      process.stderr.write(`update-prices: ${(err as Error).message}\n`)
      return 1
    }
    process.stdout.write(`${file}: ${rows} rows read, ${appended} appended, ${updated} price updates, ${bad} bad lines skipped\n`)
    return 0
  },
})
