import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { formatPriceLine, PRICE_CSV_HEADER } from '../../src/market/price-csv.ts'
import { createPrng, generateTicks } from '../../src/market/tick-generator.ts'
import { decodeTick } from '../../src/market/tick-message.ts'
import { partitionForKey } from '../../src/platform/kafka/partitions.ts'
import { createTestTopic, runCli, uniqueName } from '../helpers/infra.ts'
import { startService } from '../helpers/processes.ts'
import { readTopic } from '../helpers/topic-reader.ts'

describe('bourse generate', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bourse-generate-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  const args = ['generate', '--stocks', '7', '--ticks', '5000', '--seed', '123']
  const expected = [...generateTicks({ stocks: 7, ticks: 5000, random: createPrng(123) })]

  it('writes the same CSV for the same seed to a file and to stdout', async () => {
    const out = join(dir, 'a.csv')
    const toFile = await runCli([...args, '--out', out])
    assert.equal(toFile.code, 0, toFile.stderr)
    const text = readFileSync(out, 'utf8')
    assert.equal(text, `${[PRICE_CSV_HEADER, ...expected.map(formatPriceLine)].join('\n')}\n`)
    const toStdout = await runCli(args)
    assert.equal(toStdout.code, 0, toStdout.stderr)
    assert.equal(toStdout.stdout, text)
  })

  it('sends the ticks to a topic, key = stock, in order per stock', async () => {
    const topic = uniqueName('generate')
    const drop = await createTestTopic(topic, 3)
    try {
      const result = await runCli([...args, '--topic', topic, '--batch-size', '700'])
      assert.equal(result.code, 0, result.stderr)
      const partitions = await readTopic(topic)
      const received = partitions.flat()
      assert.equal(received.length, expected.length)
      for (const [partition, records] of partitions.entries()) {
        for (const record of records) {
          assert.equal(partition, partitionForKey(record.key ?? '', 3))
          assert.equal(decodeTick(record.key, record.value).ok, true)
        }
      }
      for (const stock of new Set(expected.map((t) => t.stock))) {
        const sent = received.filter((r) => r.key === stock).map((r) => JSON.parse(r.value ?? ''))
        assert.deepEqual(
          sent,
          expected.filter((t) => t.stock === stock),
        )
      }
    } finally {
      await drop()
    }
  })

  it('refuses --out with --topic and ticks that do not fit', async () => {
    assert.equal((await runCli([...args, '--out', 'x', '--topic', 'y'])).code, 2)
    const tooMany = await runCli([
      'generate',
      '--stocks',
      '1',
      '--ticks',
      '20',
      '--start',
      '000000',
      '--end',
      '000009',
    ])
    assert.equal(tooMany.code, 2)
    assert.match(tooMany.stderr, /do not fit/)
  })

  it('--rate makes live ticks stamped with the current time until SIGTERM, or --ticks of them', async () => {
    const hhmmss = (ms: number) => new Date(ms).toISOString().slice(11, 19).replaceAll(':', '')
    const startedAt = Date.now()
    const bounded = await runCli(['generate', '--stocks', '4', '--rate', '4', '--ticks', '6', '--seed', '9'])
    assert.equal(bounded.code, 0, bounded.stderr)
    const lines = bounded.stdout.trim().split('\n')
    assert.equal(lines[0], PRICE_CSV_HEADER)
    assert.equal(lines.length, 7)
    for (const line of lines.slice(1)) {
      const time = line.split(',')[0]!
      assert.ok(time >= hhmmss(startedAt - 1000) && time <= hhmmss(Date.now()), `${line} is not stamped now`)
    }
    assert.match((await runCli(['generate', '--stocks', '2', '--rate', '3'])).stderr, /--rate must be at most one tick per stock per second/)

    // --after: stock1..stockN walk on from their last prices in a CSV.
    const dir = mkdtempSync(join(tmpdir(), 'bourse-after-'))
    try {
      const csv = join(dir, 'prices.csv')
      writeFileSync(csv, `${PRICE_CSV_HEADER}\n090000,stock2,500\n090001,stock1,100\n090002,stock2,\n`)
      const walked = await runCli(['generate', '--after', csv, '--rate', '2', '--ticks', '2', '--max-move', '0', '--empty-percent', '0'])
      assert.equal(walked.code, 0, walked.stderr)
      const prices = new Map(walked.stdout.trim().split('\n').slice(1).map((line) => [line.split(',')[1], line.split(',')[2]]))
      assert.deepEqual(Object.fromEntries(prices), { stock1: '100', stock2: '500' })
      // Their times go on from the file's last one (090002), a second at a time.
      for (const line of walked.stdout.trim().split('\n').slice(1)) assert.match(line, /^09000[3-6],/)
      writeFileSync(csv, `${PRICE_CSV_HEADER}\n090000,stock2,500\n090001,acme,100\n`)
      const odd = await runCli(['generate', '--after', csv, '--rate', '1', '--ticks', '1'])
      assert.equal(odd.code, 2)
      assert.match(odd.stderr, /its stocks must be stock1\.\.stockN/)
      assert.equal((await runCli(['generate', '--after', csv, '--stocks', '2'])).code, 2)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }

    const topic = uniqueName('generate-live')
    const drop = await createTestTopic(topic, 3)
    try {
      const live = startService(['generate', '--stocks', '3', '--rate', '3', '--topic', topic], { ...process.env, LOG_LEVEL: 'warn' })
      // Ticks keep arriving while it runs.
      let received = 0
      for (let i = 0; i < 60 && received < 6; i++) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        received = (await readTopic(topic)).flat().length
      }
      assert.ok(received >= 6, `${received} live ticks in the topic`)
      assert.equal(await live.stop(), 0, live.output())
      const ticks = (await readTopic(topic)).flat().map((r) => JSON.parse(r.value ?? '') as { time: string; stock: string })
      const times = new Set(ticks.map((t) => `${t.stock}@${t.time}`))
      assert.equal(times.size, ticks.length, 'one tick per stock per second')
    } finally {
      await drop()
    }
  })
})
