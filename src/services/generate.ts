/**
 * `bourse generate`: random-walk price ticks (seed 003's tick producer, deterministic with a
 * seed) into a CSV file, a Kafka topic, or stdout.
 */
import { randomInt } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { formatPriceLine, PRICE_CSV_HEADER, readPriceCsv } from '../market/price-csv.ts'
import type { Tick } from '../market/tick.ts'
import {
  createPrng,
  generateTicks,
  liveTicks,
  SAMPLE_PRICES,
  secondsToTime,
  timeToSeconds,
  type TickGeneratorOptions,
  tickGeneratorProblem,
} from '../market/tick-generator.ts'
import { encodeTick, type TickMessage } from '../market/tick-message.ts'
import { partitionForKey } from '../platform/kafka/partitions.ts'
import { createProgress } from '../platform/progress.ts'
import { type CommandSpec, intOption, numberOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'
import { quote } from '../platform/quote.ts'

/** The first `limit` items of `items`. */
async function* take<T>(items: AsyncIterable<T>, limit: number): AsyncGenerator<T> {
  if (limit <= 0) return
  let n = 0
  for await (const item of items) {
    yield item
    if (++n >= limit) return
  }
}

/**
 * The stocks of a price CSV and their last prices, to walk on from: its stocks must be
 * `stock1..stockN` (the generator's names), each with a price.
 */
async function lastPrices(path: string): Promise<{ stocks: number; startPrices: number[]; nextTime: string | undefined }> {
  const last = new Map<string, number>()
  let latest = -1
  try {
    for await (const row of readPriceCsv(path)) {
      if (!('tick' in row)) continue
      if (/^\d{6}$/.test(row.tick.time)) latest = Math.max(latest, timeToSeconds(row.tick.time))
      if (row.tick.price !== null) last.set(row.tick.stock, row.tick.price)
    }
  } catch (err) {
    throw new UsageError(`--after ${path}: ${(err as Error).message}`)
  }
  const stocks = Array.from({ length: last.size }, (_, i) => `stock${i + 1}`)
  if (stocks.length === 0 || !stocks.every((stock) => last.has(stock))) {
    throw new UsageError(`--after ${path}: its stocks must be stock1..stockN with a price each (found ${[...last.keys()].slice(0, 5).join(', ') || 'none'})`)
  }
  return {
    stocks: stocks.length,
    startPrices: stocks.map((stock) => last.get(stock)!),
    nextTime: latest < 0 ? undefined : secondsToTime((latest + 1) % 86_400),
  }
}

/** Live ticks stopped by Ctrl-C or SIGTERM: their normal end. */
function stopped(count: number, seed: number): number {
  process.stderr.write(`generated ${count} live ticks (seed ${seed}), stopped\n`)
  return 0
}

const spec = {
  name: 'generate',
  usage: '[--stocks N] [--ticks M] [--out FILE | --topic T] [--seed S] [--start hhmmss] [--end hhmmss] [--rate N] ...',
  description:
    'Generates random-walk price ticks (Time,Stock,Price) for stock1..stockN: each stock starts at a random\n' +
    'price from 10 to 100 (or --start-prices), each tick moves one stock by up to --max-move percent, about\n' +
    '--empty-percent of the rows have no price. Times never decrease down the file and a stock never has two\n' +
    'ticks at the same time. The same --seed gives the same ticks. Writes a CSV file (--out), sends to Kafka\n' +
    '(--topic, key = stock) or prints the CSV on stdout. With --rate, ticks are made as time passes instead:\n' +
    'about N per second, stamped with the current UTC time, until Ctrl-C (or --ticks of them).',
  options: {
    stocks: { type: 'string' },
    ticks: { type: 'string' },
    out: { type: 'string' },
    topic: { type: 'string' },
    seed: { type: 'string' },
    start: { type: 'string' },
    end: { type: 'string' },
    'start-prices': { type: 'string' },
    decimals: { type: 'string' },
    'max-move': { type: 'string' },
    'empty-percent': { type: 'string' },
    preset: { type: 'string' },
    'batch-size': { type: 'string' },
    rate: { type: 'string' },
    after: { type: 'string' },
  },
  help: {
    stocks: 'Number of stocks, stock1..stockN (default: 3)',
    ticks: 'Number of ticks (default: 1000)',
    out: 'Write a CSV file with the header Time,Stock,Price',
    topic: 'Send to this Kafka topic instead (created with MARKET_TOPIC_PARTITIONS if missing)',
    seed: 'PRNG seed, 0 to 4294967295 (default: random, printed on stderr)',
    start: 'First possible time, hhmmss (default: 090000)',
    end: 'Last possible time, hhmmss (default: 235959)',
    'start-prices': 'Comma-separated starting prices of stock1, stock2, ... (default: random 10 to 100)',
    decimals: 'Decimals of the prices, 0 to 6 (default: 2)',
    'max-move': 'Largest move of one tick, in percent (default: 1)',
    'empty-percent': 'Share of rows without a price, in percent (default: 2)',
    preset: '"sample": the options that made fixtures/sample-prices.csv (other options override them)',
    'batch-size': 'Messages per awaited send with --topic (default: 2000; 1 with --rate)',
    after: 'A price CSV to walk on from: stock1..stockN start at their last prices there (--stocks and --start-prices then come from it), and live ticks count their times on from its last time',
    rate: 'Live ticks: about N per second (at most one per stock per second), stamped with the current time, until Ctrl-C or --ticks',
  },
} satisfies CommandSpec<Record<string, { type: 'string' }>>

/** CSV text in chunks of about 64 KiB (`flushBytes`), header first. */
async function* csvChunks(ticks: Iterable<Tick> | AsyncIterable<Tick>, onTick: () => void, flushBytes = 65_536): AsyncGenerator<string> {
  let chunk = `${PRICE_CSV_HEADER}\n`
  for await (const tick of ticks) {
    chunk += `${formatPriceLine(tick)}\n`
    onTick()
    if (chunk.length >= flushBytes) {
      yield chunk
      chunk = ''
    }
  }
  if (chunk !== '') yield chunk
}

export const { run } = defineService({
  spec,
  parse: ({ values: v }, config) => {
    if (v.out !== undefined && v.topic !== undefined) throw new UsageError('give --out or --topic, not both')
    if (v.preset !== undefined && v.preset !== 'sample') {
      throw new UsageError(`--preset must be "sample" (got ${quote(v.preset)})`)
    }
    const preset = v.preset === 'sample' ? SAMPLE_PRICES : undefined
    const startPrices = v['start-prices']
      ?.split(',')
      .map((text, i) => numberOption(`start-prices (entry ${i + 1})`, text.trim(), 0.000001, 1e12) as number)
    const options: Omit<TickGeneratorOptions, 'random'> = {
      stocks: intOption('stocks', v.stocks, 1, 1_000_000) ?? preset?.stocks ?? 3,
      ticks: intOption('ticks', v.ticks, 0, 1_000_000_000) ?? preset?.ticks ?? 1000,
      start: v.start ?? preset?.start ?? '090000',
      end: v.end ?? preset?.end ?? '235959',
      decimals: intOption('decimals', v.decimals, 0, 6) ?? preset?.decimals ?? 2,
      maxMovePercent: numberOption('max-move', v['max-move'], 0, 99) ?? preset?.maxMovePercent ?? 1,
      emptyPercent: numberOption('empty-percent', v['empty-percent'], 0, 100) ?? preset?.emptyPercent ?? 2,
    }
    const prices = startPrices ?? preset?.startPrices
    if (prices) options.startPrices = prices
    if (v.after !== undefined && (v.stocks !== undefined || v['start-prices'] !== undefined)) {
      throw new UsageError('--after gives the stocks and their start prices: leave out --stocks and --start-prices')
    }
    const rate = numberOption('rate', v.rate, 0.001, 1_000_000)
    if (rate !== undefined && v.after === undefined && rate > options.stocks) {
      throw new UsageError(`--rate must be at most one tick per stock per second (${options.stocks} with --stocks ${options.stocks}); got ${rate}`)
    }
    // Live ticks take their times from the clock: --start and --end do not bound them.
    const problem = tickGeneratorProblem(rate === undefined ? options : { ...options, ticks: 0 })
    if (problem) throw new UsageError(problem)
    const seed = intOption('seed', v.seed, 0, 0xffff_ffff) ?? preset?.seed
    return {
      generator: options,
      seed: seed ?? randomInt(0, 0xffff_ffff),
      seedGiven: seed !== undefined,
      out: v.out,
      topic: v.topic,
      partitions: config.MARKET_TOPIC_PARTITIONS,
      batchSize: intOption('batch-size', v['batch-size'], 1, 100_000) ?? (rate === undefined ? 2000 : 1),
      rate,
      after: v.after,
      // Live: every tick until Ctrl-C, unless --ticks bounds them.
      limit: rate === undefined || v.ticks !== undefined ? options.ticks : Number.POSITIVE_INFINITY,
    }
  },
  needs: ({ topic, partitions }) => ({
    producer: topic !== undefined,
    topics: topic === undefined ? undefined : [{ name: topic, partitions }],
  }),
  async start(ctx, { generator: given, seed, seedGiven, out, topic, batchSize, rate, limit, after }) {
    const { log, lifecycle } = ctx
    if (!seedGiven) log.info({ seed }, 'random seed (pass --seed to repeat this run)')
    const from = after === undefined ? undefined : await lastPrices(after)
    const generator = from === undefined ? given : { ...given, stocks: from.stocks, startPrices: from.startPrices }
    if (rate !== undefined && rate > generator.stocks) {
      throw new UsageError(`--rate must be at most one tick per stock per second (${generator.stocks} stocks in ${after}); got ${rate}`)
    }
    const random = createPrng(seed)
    const ticks =
      rate === undefined
        ? generateTicks({ ...generator, random })
        : take(
            liveTicks({
              ...generator,
              random,
              ratePerSecond: rate,
              signal: lifecycle.signal,
              // After a file, its times go on from its last one.
              ...(from?.nextTime !== undefined && { firstTime: from.nextTime }),
            }),
            limit,
          )
    const progress = out !== undefined || topic !== undefined
    const bar = progress && rate === undefined ? createProgress({ label: 'generate', total: generator.ticks, log }) : undefined
    let done = 0
    const count = () => {
      done++
      if (done % 1000 === 0) bar?.update(done)
    }
    if (topic === undefined) {
      // Live ticks are written as they come.
      const source = Readable.from(csvChunks(ticks, count, rate === undefined ? 65_536 : 1))
      const { signal } = lifecycle
      try {
        if (out !== undefined) await pipeline(source, createWriteStream(out), { signal })
        else await pipeline(source, process.stdout, { end: false, signal })
      } catch (err) {
        if (signal.aborted) {
          if (rate !== undefined) return stopped(done, seed)
          process.stderr.write(`\ninterrupted after ${done} ticks\n`)
          return 1
        }
        // A closed pipe (`bourse generate | head`) is the reader saying it has enough.
        if (out !== undefined || (err as NodeJS.ErrnoException).code !== 'EPIPE') throw err
      }
    } else {
      // Opened by `needs` whenever --topic is given.
      const { producer, partitions } = ctx
      const partitionCount = partitions.get(topic)!
      // The same partition `bourse produce` computes, so both keep a stock in one partition.
      const partitionOf = new Map<string, number>()
      const partitionFor = (stock: string) => {
        let partition = partitionOf.get(stock)
        if (partition === undefined) {
          partition = partitionForKey(stock, partitionCount)
          partitionOf.set(stock, partition)
        }
        return partition
      }
      let sent = 0
      const sending = (async () => {
        let batch: Array<TickMessage & { partition: number }> = []
        for await (const tick of ticks) {
          if (lifecycle.signal.aborted) return false
          batch.push({ ...encodeTick(topic, tick), partition: partitionFor(tick.stock) })
          count()
          if (batch.length >= batchSize) {
            await producer.send({ messages: batch })
            sent += batch.length
            batch = []
          }
        }
        if (batch.length > 0) await producer.send({ messages: batch })
        return true
      })()
      lifecycle.onClose('generate loop', () => sending.catch(() => {}))
      if (!(await sending)) {
        if (rate !== undefined) return stopped(sent, seed)
        process.stderr.write(`\ninterrupted after sending ${sent} ticks\n`)
        return 1
      }
    }
    bar?.finish(done)
    if (progress) process.stderr.write(`generated ${done} ticks (seed ${seed})\n`)
    return 0
  },
})
