import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createTestTopic, runCli, uniqueName } from '../helpers/infra.ts'
import { readTopic } from '../helpers/topic-reader.ts'

describe('bourse produce', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bourse-produce-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('reports bad lines on stderr, sends the rest, prints a summary and exits 0', async () => {
    const csv = join(dir, 'prices.csv')
    writeFileSync(
      csv,
      'Time,Stock,Price\n090001,stock1,10\n090002,stock1\n090003,stock2,x\n090004,stock2,11\n',
    )
    const topic = uniqueName('produce-cli')
    const drop = await createTestTopic(topic, 3)
    try {
      const first = await runCli(['produce', '--csv', csv, '--topic', topic])
      assert.equal(first.code, 0, first.stderr)
      assert.match(first.stdout, /^done: sent 2, already present 0, skipped bad lines 2 /)
      assert.match(first.stderr, /skipped line 3: expected 3 columns/)
      assert.match(first.stderr, /skipped line 4: price "x" is not a non-negative number/)
      const again = await runCli(['produce', '--csv', csv, '--topic', topic])
      assert.equal(again.code, 0, again.stderr)
      assert.match(again.stdout, /^done: sent 0, already present 2, skipped bad lines 2 /)
      assert.equal((await readTopic(topic)).flat().length, 2)
    } finally {
      await drop()
    }
  })

  it('needs --csv and exits 1 for a file that is not a price CSV', async () => {
    const missing = await runCli(['produce'])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /--csv FILE is required/)
    const csv = join(dir, 'other.csv')
    writeFileSync(csv, 'a,b,c\n1,2,3\n')
    const topic = uniqueName('produce-cli')
    const drop = await createTestTopic(topic, 3)
    try {
      const wrong = await runCli(['produce', '--csv', csv, '--topic', topic])
      assert.equal(wrong.code, 1)
      assert.match(wrong.stderr, /line 1 must be the header/)
    } finally {
      await drop()
    }
  })
})
