import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parsePriceLine } from '../../src/market/price-csv.ts'
import type { Tick } from '../../src/market/tick.ts'
import { decodeTick, LINE_HEADER, SOURCE_HEADER } from '../../src/market/tick-message.ts'
import {
  describeCsvSource,
  type ProduceCsvOptions,
  type ProduceCsvResult,
  produceCsv,
} from '../../src/market/tick-producer.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { createProducer, type StringConsumer, type StringProducer } from '../../src/platform/kafka/clients.ts'
import { partitionForKey } from '../../src/platform/kafka/partitions.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { createTestTopic, testConfig, uniqueName } from '../helpers/infra.ts'
import { createReaderConsumer, endOffsets, readTopic, type TopicRecord } from '../helpers/topic-reader.ts'

const originalCsv = fileURLToPath(new URL('../../../shared/fixtures/price_data.csv', import.meta.url))
const log = createLogger({ level: 'silent', pretty: false })

/** The rows of a CSV file by line number (good rows only). */
function fileRows(path: string): Map<number, Tick> {
  const rows = new Map<number, Tick>()
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (i === 0 || text.trim() === '') return
      const row = parsePriceLine(text, i + 1)
      if ('tick' in row) rows.set(row.line, row.tick)
    })
  return rows
}

/**
 * Checks that the topic holds each row of the file exactly once, as the producer writes
 * it: key = stock, the partition of the key, the row's tick as value, and in each partition
 * the rows in file order.
 */
async function assertTopicHoldsFile(
  topic: string,
  path: string,
  consumer: StringConsumer,
): Promise<TopicRecord[]> {
  const { source } = await describeCsvSource(path)
  const rows = fileRows(path)
  const partitions = await readTopic(topic, consumer)
  const seen = new Set<number>()
  for (const [partition, records] of partitions.entries()) {
    let previous = 0
    for (const record of records) {
      assert.equal(record.headers.get(SOURCE_HEADER), source)
      const line = Number(record.headers.get(LINE_HEADER))
      assert.ok(!seen.has(line), `line ${line} is in the topic twice`)
      seen.add(line)
      assert.ok(line > previous, `partition ${partition}: line ${line} after line ${previous}`)
      previous = line
      const tick = rows.get(line)
      assert.ok(tick, `line ${line} is not a good row of the file`)
      assert.equal(record.key, tick.stock)
      assert.equal(partition, partitionForKey(tick.stock, partitions.length))
      const decoded = decodeTick(record.key, record.value)
      assert.ok(decoded.ok, `line ${line}: ${JSON.stringify(decoded)}`)
      const { time, stock, price } = decoded.tick
      assert.deepEqual({ time, stock, price }, tick)
    }
  }
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    [...rows.keys()],
  )
  return partitions.flat()
}

describe('produceCsv', () => {
  let producer: StringProducer
  let consumer: StringConsumer
  const drops: Array<() => Promise<void>> = []
  let dir: string

  const topic = async () => {
    const name = uniqueName('tick-producer')
    drops.push(await createTestTopic(name, 3))
    return name
  }
  const produce = (options: ProduceCsvOptions): Promise<ProduceCsvResult> =>
    produceCsv({ producer, consumer, log }, options)

  before(() => {
    producer = createProducer({ brokers: kafkaBrokers(testConfig()) })
    consumer = createReaderConsumer()
    dir = mkdtempSync(join(tmpdir(), 'bourse-tick-producer-'))
  })
  after(async () => {
    await Promise.all([producer.close(), consumer.close()])
    for (const drop of drops) await drop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('sends every row of the original price_data.csv once, key = stock, in file order per stock', async () => {
    const name = await topic()
    const result = await produce({ csvPath: originalCsv, topic: name })
    assert.equal(result.sent, 510)
    assert.equal(result.alreadyPresent, 0)
    assert.equal(result.badLines, 0)
    assert.equal(result.completed, true)
    const records = await assertTopicHoldsFile(name, originalCsv, consumer)
    assert.equal(records.length, 510)

    // Per stock, the order of the topic is the order of the file.
    const rows = fileRows(originalCsv)
    for (const stock of ['stock1', 'stock2', 'stock3']) {
      const inFile = [...rows].filter(([, t]) => t.stock === stock).map(([line]) => line)
      const inTopic = records.filter((r) => r.key === stock).map((r) => Number(r.headers.get(LINE_HEADER)))
      assert.deepEqual(inTopic, inFile, stock)
    }

    // Run again: nothing is sent and the topic is unchanged.
    const ends = await endOffsets(name, consumer)
    const again = await produce({ csvPath: originalCsv, topic: name })
    assert.equal(again.sent, 0)
    assert.equal(again.alreadyPresent, 510)
    assert.deepEqual(await endOffsets(name, consumer), ends)
  })

  it('reports bad lines with their line number and sends the rest', async () => {
    const path = join(dir, 'bad.csv')
    writeFileSync(
      path,
      [
        'Time,Stock,Price',
        '090001,stock1,100',
        '090002,stock2', // line 3: missing column
        '090003,stock1,abc', // line 4: not a number
        '',
        '090004,stock3,',
        '090005,stock2,12.5,7', // line 7: extra column
        '0900x6,stock1,101', // line 8: bad time
        '090007,stock1,102',
        '',
      ].join('\n'),
    )
    const name = await topic()
    const result = await produce({ csvPath: path, topic: name })
    assert.deepEqual(
      result.bad.map((b) => b.line),
      [3, 4, 7, 8],
    )
    for (const bad of result.bad) assert.match(bad.error, new RegExp(`^line ${bad.line}: `))
    assert.match(result.bad[0]?.error ?? '', /expected 3 columns/)
    assert.match(result.bad[1]?.error ?? '', /"abc" is not a non-negative number/)
    assert.equal(result.badLines, 4)
    assert.equal(result.sent, 3)
    const records = await assertTopicHoldsFile(name, path, consumer)
    assert.deepEqual(
      records.map((r) => Number(r.headers.get(LINE_HEADER))).sort((a, b) => a - b),
      [2, 6, 9],
    )
  })

  it('resumes after an interrupted run, also past other data written in between', async () => {
    const path = join(dir, 'many.csv')
    const header = 'Time,Stock,Price'
    const lines = Array.from({ length: 3000 }, (_, i) => {
      const s = 10_000 + i
      return `${String(Math.floor(s / 3600)).padStart(2, '0')}${String(Math.floor(s / 60) % 60).padStart(2, '0')}${String(s % 60).padStart(2, '0')},stock${(i % 7) + 1},${i}`
    })
    writeFileSync(path, `${header}\n${lines.join('\n')}\n`)
    const name = await topic()

    // Stop after the first two sends of 100.
    const controller = new AbortController()
    const first = await produce({
      csvPath: path,
      topic: name,
      batchSize: 100,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.sent >= 200) controller.abort()
      },
    })
    assert.equal(first.completed, false)
    assert.ok(first.sent >= 200 && first.sent < 3000, `first run sent ${first.sent}`)

    // Another source writes after it, more than one tail step of 50 in every partition.
    const other = Array.from({ length: 1500 }, (_, i) => ({
      topic: name,
      key: `stock${(i % 7) + 1}`,
      value: JSON.stringify({ time: '120000', stock: `stock${(i % 7) + 1}`, price: 1 }),
      headers: { [SOURCE_HEADER]: 'someone-else', [LINE_HEADER]: String(i + 2) },
    }))
    await producer.send({ messages: other })

    const second = await produce({ csvPath: path, topic: name, batchSize: 500, tailChunk: 50 })
    assert.equal(second.completed, true)
    assert.equal(second.alreadyPresent, first.sent)
    assert.equal(second.sent, 3000 - first.sent)

    const mine = (await readTopic(name, consumer)).map((records) =>
      records.filter((r) => r.headers.get(SOURCE_HEADER) !== 'someone-else'),
    )
    const seen = mine.flat().map((r) => Number(r.headers.get(LINE_HEADER)))
    assert.equal(seen.length, 3000)
    assert.equal(new Set(seen).size, 3000)
    for (const records of mine) {
      const order = records.map((r) => Number(r.headers.get(LINE_HEADER)))
      assert.deepEqual(
        order,
        [...order].sort((a, b) => a - b),
      )
    }
  })

  it('rejects a file without the header before sending anything', async () => {
    const path = join(dir, 'no-header.csv')
    writeFileSync(path, '090001,stock1,100\n')
    const name = await topic()
    await assert.rejects(produce({ csvPath: path, topic: name }), /line 1 must be the header/)
    assert.deepEqual(await endOffsets(name, consumer), [0n, 0n, 0n])
  })
})
