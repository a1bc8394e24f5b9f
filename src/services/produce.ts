/**
 * `bourse produce --csv FILE [--topic T]`: fills the market topic from a price CSV (step 3 of
 * the seed), every good row exactly once. Killed and started again, it sends only what the
 * topic does not hold yet (see src/market/tick-producer.ts for how).
 */
import {
  type BadLine,
  type ProduceCsvProgress,
  type ProduceCsvResult,
  produceCsv,
} from '../market/tick-producer.ts'
import { createProgress, type Progress } from '../platform/progress.ts'
import { type CommandSpec, intOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'produce',
  usage: '--csv FILE [--topic T] [--batch-size N]',
  description:
    'Sends a price CSV (Time,Stock,Price) into a Kafka topic with an idempotent producer, key = stock.\n' +
    'Resumable: a rerun sends only the rows the topic does not hold yet. Bad lines are reported and skipped.',
  options: {
    csv: { type: 'string' },
    topic: { type: 'string' },
    'batch-size': { type: 'string' },
  },
  help: {
    csv: 'The price CSV to send (required)',
    topic: 'Topic to fill (default: MARKET_TOPIC, main_topic)',
    'batch-size': 'Messages per awaited send, 1 to 100000 (default: 2000)',
  },
} satisfies CommandSpec<Record<string, { type: 'string' }>>

const format = new Intl.NumberFormat('en-US')

/** The one-line summary printed at the end. */
export function summaryLine(result: ProduceCsvResult, topic: string): string {
  return (
    `${result.completed ? 'done' : 'interrupted'}: sent ${format.format(result.sent)}, ` +
    `already present ${format.format(result.alreadyPresent)}, skipped bad lines ${format.format(result.badLines)} ` +
    `(topic ${topic}, source ${result.source})`
  )
}

export const { run } = defineService({
  spec,
  parse: ({ values }, config) => {
    const csvPath = values.csv
    if (typeof csvPath !== 'string' || csvPath === '') throw new UsageError('--csv FILE is required')
    return {
      csvPath,
      topic: values.topic ?? config.MARKET_TOPIC,
      batchSize: intOption('batch-size', values['batch-size'], 1, 100_000) ?? 2000,
    }
  },
  // The reader only fetches partition tails and offsets: the group is never joined.
  needs: ({ topic }, config) => ({ producer: true, reader: true, topics: [{ name: topic, partitions: config.MARKET_TOPIC_PARTITIONS }] }),
  async start({ log, lifecycle, producer, reader }, options) {
    let progress: Progress | undefined
    const show = (p: ProduceCsvProgress) => {
      progress ??= createProgress({ label: 'produce', total: p.totalRows, log })
      progress.update(p.rows, `sent ${format.format(p.sent)}`)
    }
    // Each bad line once, as it is met (over the progress bar on a TTY).
    const clear = process.stderr.isTTY ? '\r\x1b[K' : ''
    const onBadLine = (bad: BadLine) => process.stderr.write(`${clear}skipped ${bad.error}\n`)
    const producing = produceCsv(
      { producer, consumer: reader, log },
      { ...options, signal: lifecycle.signal, onProgress: show, onBadLine },
    )
    // A signal closes the clients only after the send in flight is acknowledged.
    lifecycle.onClose('produce loop', () => producing.catch(() => {}))
    const result = await producing
    progress?.finish(result.rows, `sent ${format.format(result.sent)}`)
    process.stdout.write(`${summaryLine(result, options.topic)}\n`)
    return result.completed ? 0 : 1
  },
})
