/**
 * `npm run bench:ingest`: end-to-end exactly-once ingest (Kafka → price updater → Redis)
 * against the raw consume rate of the same Kafka client, in the same run, on the same
 * topic. Also checks that ingest does not slow down as histories grow: the rate over the
 * last tenth of the messages against the rate over the first tenth.
 *
 * The two are measured in alternating rounds (each with a fresh consumer group, and a
 * flushed Redis for ingest) and compared by their medians, because one run of either on
 * a 2-core machine shared with the broker and Redis varies by tens of percent.
 *
 * Options (env): BENCH_TICKS (1000000), BENCH_STOCKS (100), BENCH_PARTITIONS (3),
 * BENCH_ROUNDS (5: the raw consume rate alone moves by a third between runs on a 2-core
 * machine, and the median of five holds still better than of three), BENCH_REDIS_DB (11,
 * flushed before and after).
 */
import { writeFile } from 'node:fs/promises'
import { MessagesStreamFallbackModes, MessagesStreamModes } from '@platformatic/kafka'
import { createPriceUpdater } from '../src/market/price-updater.consumer.ts'
import { createStockHistoryRepository } from '../src/market/stock-history.repository.ts'
import { createPrng, generateTicks } from '../src/market/tick-generator.ts'
import { encodeTick } from '../src/market/tick-message.ts'
import { kafkaBrokers, loadConfig } from '../src/platform/config.ts'
import { createAdmin, createConsumer, createProducer } from '../src/platform/kafka/clients.ts'
import { createLogger } from '../src/platform/logger.ts'
import { createRedis } from '../src/platform/redis.ts'

const TICKS = Number(process.env.BENCH_TICKS ?? 1_000_000)
const STOCKS = Number(process.env.BENCH_STOCKS ?? 100)
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 3)
const DB = Number(process.env.BENCH_REDIS_DB ?? 11)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const settings = { brokers: kafkaBrokers(config) }
const topic = `bench-ingest-${Date.now()}`
const redisUrl = `${config.REDIS_URL.replace(/\/\d*$/, '')}/${DB}`

type Mark = { at: number; count: number }

/** Rate (messages/s) between the marks where the count crosses two fractions of the total. */
function rateBetween(marks: Mark[], from: number, to: number): number {
  const first = marks.find((m) => m.count >= TICKS * from) ?? marks[0]!
  const start = from === 0 ? marks[0]! : first
  const end = marks.find((m) => m.count >= TICKS * to) ?? marks.at(-1)!
  return (end.count - start.count) / ((end.at - start.at) / 1000)
}

async function fillTopic(): Promise<number> {
  const admin = createAdmin(settings)
  await admin.createTopics({ topics: [topic, `${topic}.dead-letter`], partitions: PARTITIONS, replicas: 1 })
  await admin.close()
  const producer = createProducer(settings)
  const started = performance.now()
  let batch = []
  for (const tick of generateTicks({ stocks: STOCKS, ticks: TICKS, random: createPrng(1), emptyPercent: 2 })) {
    batch.push(encodeTick(topic, tick))
    if (batch.length === 5000) {
      await producer.send({ messages: batch })
      batch = []
    }
  }
  if (batch.length > 0) await producer.send({ messages: batch })
  await producer.close()
  return TICKS / ((performance.now() - started) / 1000)
}

/** Baseline: the same client consuming the topic as a group, doing nothing per message. */
async function rawConsume(round: number): Promise<{ rate: number; marks: Mark[] }> {
  const consumer = createConsumer(settings, `${topic}-raw-${round}`)
  const stream = await consumer.consume({
    topics: [topic],
    mode: MessagesStreamModes.COMMITTED,
    fallbackMode: MessagesStreamFallbackModes.EARLIEST,
  })
  const marks: Mark[] = []
  let count = 0
  for await (const _message of stream) {
    count++
    if (count === 1 || count % 10_000 === 0) marks.push({ at: performance.now(), count })
    if (count >= TICKS) break
  }
  await stream.close()
  await consumer.close(true)
  return { rate: rateBetween(marks, 0, 1), marks }
}

/** The price updater, exactly once into Redis, timed from its first batch to its last. */
async function ingest(
  round: number,
): Promise<{ rate: number; firstTenth: number; lastTenth: number; batches: number }> {
  const redis = createRedis(redisUrl, log, 'bench')
  await redis.flushdb()
  const history = createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS })
  const marks: Mark[] = []
  const timed = {
    ...history,
    applyTicks: async (...args: Parameters<typeof history.applyTicks>) => {
      const result = await history.applyTicks(...args)
      const previous = marks.at(-1)?.count ?? 0
      marks.push({ at: performance.now(), count: previous + args[0].length + (args[1]?.consumedOnly?.length ?? 0) })
      return result
    },
  }
  const group = `${topic}-ingest-${round}`
  const consumer = createConsumer(settings, group)
  const producer = createProducer(settings)
  const updater = createPriceUpdater(
    { consumer, producer, history: timed, log },
    { topic, group, deadLetterTopic: `${topic}.dead-letter`, untilIdle: true },
  )
  const stats = await updater.run(new AbortController().signal)
  await consumer.close(true)
  await producer.close()
  const stored = JSON.parse((await redis.get('stock1')) ?? '{}') as { time?: unknown[] }
  if (stats.messages !== TICKS || stats.appended + stats.updated + stats.unchanged !== TICKS) {
    throw new Error(`ingest applied ${stats.messages} messages, expected ${TICKS}`)
  }
  if (!stored.time?.length) throw new Error('stock1 has no history after ingest')
  await redis.flushdb()
  await redis.quit()
  return {
    rate: rateBetween(marks, 0, 1),
    firstTenth: rateBetween(marks, 0, 0.1),
    lastTenth: rateBetween(marks, 0.9, 1),
    batches: stats.batches,
  }
}

async function dropTopic() {
  const admin = createAdmin(settings)
  await admin.deleteTopics({ topics: [topic, `${topic}.dead-letter`] }).catch(() => undefined)
  await admin.close()
}

try {
  process.stdout.write(`filling ${topic} with ${TICKS} ticks over ${STOCKS} stocks, ${PARTITIONS} partitions...\n`)
  const produceRate = await fillTopic()
  const raws: number[] = []
  const runs: Array<Awaited<ReturnType<typeof ingest>>> = []
  for (let round = 1; round <= ROUNDS; round++) {
    raws.push((await rawConsume(round)).rate)
    runs.push(await ingest(round))
    process.stdout.write(
      `round ${round}: raw consume ${raws.at(-1)!.toFixed(0)} msg/s, ingest ${runs.at(-1)!.rate.toFixed(0)} msg/s\n`,
    )
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const raw = { rate: median(raws) }
  const run = {
    rate: median(runs.map((r) => r.rate)),
    firstTenth: median(runs.map((r) => r.firstTenth)),
    lastTenth: median(runs.map((r) => r.lastTenth)),
    batches: median(runs.map((r) => r.batches)),
  }
  const ratio = run.rate / raw.rate
  const growth = median(runs.map((r) => r.lastTenth / r.firstTenth))
  const rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20)
  const rows: Array<[string, string]> = [
    ['ticks / stocks / partitions / rounds', `${TICKS} / ${STOCKS} / ${PARTITIONS} / ${ROUNDS}`],
    ['produce (msg/s)', produceRate.toFixed(0)],
    ['raw consume, baseline, median (msg/s)', raw.rate.toFixed(0)],
    ['exactly-once ingest, median (msg/s)', run.rate.toFixed(0)],
    ['ingest / raw consume (target >= 0.5)', ratio.toFixed(2)],
    ['ingest first tenth, median (msg/s)', run.firstTenth.toFixed(0)],
    ['ingest last tenth, median (msg/s)', run.lastTenth.toFixed(0)],
    ['last tenth / first tenth, median (target >= ~1)', growth.toFixed(2)],
    ['batches', String(run.batches)],
    ['process RSS at end (MiB)', String(rssMiB)],
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  process.stdout.write(`\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`)
  const result = {
    benchmark: 'ingest',
    date: new Date().toISOString(),
    node: process.version,
    ticks: TICKS,
    stocks: STOCKS,
    partitions: PARTITIONS,
    rounds: ROUNDS,
    rawConsumeRates: raws.map(Math.round),
    ingestRates: runs.map((r) => Math.round(r.rate)),
    materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS,
    produceRate: Math.round(produceRate),
    rawConsumeRate: Math.round(raw.rate),
    ingestRate: Math.round(run.rate),
    ratio: Number(ratio.toFixed(3)),
    firstTenthRate: Math.round(run.firstTenth),
    lastTenthRate: Math.round(run.lastTenth),
    lastOverFirst: Number(growth.toFixed(3)),
    rssMiB,
  }
  await writeFile(new URL('./results/ingest.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write('\nwritten to bench/results/ingest.json\n')
} finally {
  await dropTopic()
}
