/**
 * Exactly-once of `bourse produce`, proven by killing the real process: SIGKILL at random
 * points while it fills a topic from a 100,000-row CSV, at least 5 times, then a run to
 * the end must leave each row in the topic exactly once, in file order per partition.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { LINE_HEADER, SOURCE_HEADER } from '../../src/market/tick-message.ts'
import { describeCsvSource } from '../../src/market/tick-producer.ts'
import type { StringConsumer } from '../../src/platform/kafka/clients.ts'
import { createTestTopic, runCli, startCli, uniqueName, waitFor } from '../helpers/infra.ts'
import { createReaderConsumer, endOffsets, readTopic } from '../helpers/topic-reader.ts'

const ROWS = 100_000
const KILLS = 6
const topic = uniqueName('crash-produce')
let dir: string
let drop: () => Promise<void>
let consumer: StringConsumer

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bourse-produce-crash-'))
  drop = await createTestTopic(topic, 3)
  consumer = createReaderConsumer()
})
after(async () => {
  await consumer.close()
  await drop()
  rmSync(dir, { recursive: true, force: true })
})

const total = async () => (await endOffsets(topic, consumer)).reduce((sum, end) => sum + end, 0n)

test(`produce killed ${KILLS} times with SIGKILL during a ${ROWS}-row send puts each row in the topic once`, async (t) => {
  const csv = join(dir, 'ticks.csv')
  const generated = await runCli([
    'generate',
    '--stocks',
    '50',
    '--ticks',
    String(ROWS),
    '--seed',
    '99',
    '--out',
    csv,
  ])
  assert.equal(generated.code, 0, generated.stderr)
  const { source } = await describeCsvSource(csv)

  const killedAt: bigint[] = []
  for (let kill = 0; kill < KILLS; kill++) {
    const before = await total()
    // A random point between the next send and a few sends later, well before the end.
    const target = before + 1n + BigInt(Math.floor(Math.random() * 6000))
    assert.ok(target < BigInt(ROWS), 'the kills leave work for the last run')
    const batchSize = 200 + Math.floor(Math.random() * 1800)
    const child: ChildProcess = startCli([
      'produce',
      '--csv',
      csv,
      '--topic',
      topic,
      '--batch-size',
      String(batchSize),
    ])
    let stderr = ''
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const exited = once(child, 'exit')
    await waitFor(
      async () => {
        if (child.exitCode !== null)
          assert.fail(`produce ended before the kill (code ${child.exitCode}): ${stderr}`)
        return (await total()) >= target
      },
      { timeoutMs: 30_000, intervalMs: 10, what: `the topic to grow past ${target}` },
    )
    child.kill('SIGKILL')
    const [code, signal] = await exited
    assert.equal(signal, 'SIGKILL', `produce was killed, not ended with code ${code}`)
    killedAt.push(await total())
  }
  t.diagnostic(`messages in the topic after each kill: ${killedAt.join(', ')}`)
  assert.equal(killedAt.length, KILLS)
  for (let i = 1; i < killedAt.length; i++) assert.ok((killedAt[i] as bigint) > (killedAt[i - 1] as bigint))
  assert.ok((killedAt.at(-1) as bigint) < BigInt(ROWS), 'the last kill interrupted the send')

  const started = Date.now()
  const final = await runCli(['produce', '--csv', csv, '--topic', topic])
  assert.equal(final.code, 0, final.stderr)
  const sent = Number(/sent ([\d,]+)/.exec(final.stdout)?.[1]?.replaceAll(',', ''))
  const present = Number(/already present ([\d,]+)/.exec(final.stdout)?.[1]?.replaceAll(',', ''))
  assert.equal(present, Number(killedAt.at(-1)), final.stdout)
  assert.equal(sent + present, ROWS, final.stdout)
  t.diagnostic(`last run: ${final.stdout.trim()} in ${Date.now() - started} ms`)

  // Each row once (by its line), and each partition in file order.
  const lines = readFileSync(csv, 'utf8').trimEnd().split('\n').length
  assert.equal(lines, ROWS + 1)
  const partitions = await readTopic(topic, consumer)
  const seen = new Uint8Array(ROWS + 2)
  let count = 0
  for (const [partition, records] of partitions.entries()) {
    let previous = 0
    for (const record of records) {
      assert.equal(record.headers.get(SOURCE_HEADER), source)
      const line = Number(record.headers.get(LINE_HEADER))
      assert.ok(line >= 2 && line <= ROWS + 1, `line ${line} out of the file`)
      assert.equal(seen[line], 0, `line ${line} is in the topic twice`)
      seen[line] = 1
      assert.ok(line > previous, `partition ${partition}: line ${line} after ${previous}`)
      previous = line
      count++
    }
  }
  assert.equal(count, ROWS)
})
