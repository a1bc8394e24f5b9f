/** Price CSV rows: good rows become ticks, bad rows name their line and why. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type CsvRow, formatPriceLine, parsePriceLine, readPriceCsv } from '../../src/market/price-csv.ts'

/** The error of a row; fails when the row is a tick. */
function errorOf(row: CsvRow): string {
  assert.ok('error' in row, `expected an error, got ${JSON.stringify(row)}`)
  return row.error
}

describe('parsePriceLine', () => {
  it('reads a good row', () => {
    assert.deepEqual(parsePriceLine('090006,stock3,1734', 2), {
      line: 2,
      tick: { time: '090006', stock: 'stock3', price: 1734 },
    })
    assert.deepEqual(parsePriceLine(' 235959 , AAPL_b-2 , 0.125 ', 9), {
      line: 9,
      tick: { time: '235959', stock: 'AAPL_b-2', price: 0.125 },
    })
    assert.deepEqual(parsePriceLine('000000,s,0', 3), { line: 3, tick: { time: '000000', stock: 's', price: 0 } })
  })

  it('reads an empty price as null (no data)', () => {
    assert.deepEqual(parsePriceLine('090001,stock1,', 4), { line: 4, tick: { time: '090001', stock: 'stock1', price: null } })
    assert.deepEqual(parsePriceLine('090001,stock1, ', 4), { line: 4, tick: { time: '090001', stock: 'stock1', price: null } })
  })

  it('round-trips with formatPriceLine', () => {
    for (const text of ['090006,stock3,1734', '120000,stock1,', '120000,stock2,12.5']) {
      const row = parsePriceLine(text, 2)
      assert.ok('tick' in row)
      assert.equal(formatPriceLine(row.tick), text)
    }
  })

  const bad: Array<[string, string, RegExp]> = [
    ['a missing column', '090000,stock1', /expected 3 columns .* got 2/],
    ['an extra column', '090000,stock1,10,11', /expected 3 columns .* got 4/],
    ['a non-numeric price', '090000,stock1,abc', /price "abc" is not a non-negative number/],
    ['a negative price', '090000,stock1,-5', /price "-5" is not a non-negative number/],
    ['a price with an exponent', '090000,stock1,1e3', /price "1e3"/],
    ['a time past 23:59:59', '256000,stock1,10', /time "256000" is not hhmmss/],
    ['a time with 60 seconds', '090060,stock1,10', /time "090060"/],
    ['a time with colons', '09:00:00,stock1,10', /time "09:00:00" is not hhmmss/],
    ['a short time', '9000,stock1,10', /time "9000"/],
    ['a stock name starting with a digit', '090000,1stock,10', /stock "1stock" must be a letter/],
    ['a stock name with a space', '090000,stock 1,10', /stock "stock 1"/],
    ['an empty stock name', '090000,,10', /stock ""/],
    ['a stock named like a user key', '090000,user1,10', /stock "user1" would overwrite a user key/],
  ]
  for (const [what, text, reason] of bad) {
    it(`refuses ${what}, naming the line`, () => {
      const error = errorOf(parsePriceLine(text, 17))
      assert.match(error, /^line 17: /)
      assert.match(error, reason)
    })
  }

  it('accepts stock names that only start like a user key', () => {
    assert.ok('tick' in parsePriceLine('090000,user,10', 2))
    assert.ok('tick' in parsePriceLine('090000,user1x,10', 2))
  })
})

describe('readPriceCsv', () => {
  let dir: string
  let n = 0
  const file = (text: string) => {
    const path = join(dir, `f${n++}.csv`)
    writeFileSync(path, text)
    return path
  }
  const readAll = async (path: string) => {
    const rows: CsvRow[] = []
    for await (const row of readPriceCsv(path)) rows.push(row)
    return rows
  }
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bourse-price-csv-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('yields every row in file order with its line number', async () => {
    const rows = await readAll(file('Time,Stock,Price\n090000,stock1,10\n090001,stock2,\n090002,stock1,11.5\n'))
    assert.deepEqual(rows, [
      { line: 2, tick: { time: '090000', stock: 'stock1', price: 10 } },
      { line: 3, tick: { time: '090001', stock: 'stock2', price: null } },
      { line: 4, tick: { time: '090002', stock: 'stock1', price: 11.5 } },
    ])
  })

  it('handles a BOM, CRLF line ends, blank lines and a last line without newline', async () => {
    const rows = await readAll(
      file('\uFEFFTime,Stock,Price\r\n090000,stock1,10\r\n\r\n   \r\n090001,stock2,x\r\n\n090002,stock3,7'),
    )
    assert.deepEqual(rows, [
      { line: 2, tick: { time: '090000', stock: 'stock1', price: 10 } },
      { line: 5, error: 'line 5: price "x" is not a non-negative number' },
      { line: 7, tick: { time: '090002', stock: 'stock3', price: 7 } },
    ])
  })

  it('accepts the header in another case and with spaces', async () => {
    const rows = await readAll(file('time, stock ,PRICE\n090000,stock1,10\n'))
    assert.equal(rows.length, 1)
  })

  it('keeps reading after a bad row', async () => {
    const rows = await readAll(file('Time,Stock,Price\n090000,stock1\n090001,stock1,1\n'))
    assert.deepEqual(
      rows.map((r) => ('tick' in r ? `ok ${r.line}` : r.error)),
      ['line 2: expected 3 columns (Time,Stock,Price), got 2', 'ok 3'],
    )
  })

  it('requires the header, before yielding anything', async () => {
    const path = file('090000,stock1,10\n090001,stock1,11\n')
    const seen: CsvRow[] = []
    await assert.rejects(async () => {
      for await (const row of readPriceCsv(path)) seen.push(row)
    }, /line 1 must be the header "Time,Stock,Price"/)
    assert.deepEqual(seen, [])
  })

  it('refuses an empty file', async () => {
    await assert.rejects(readAll(file('')), /empty file/)
  })

  it('rejects a missing file', async () => {
    await assert.rejects(readAll(join(dir, 'missing.csv')), { code: 'ENOENT' })
  })
})
