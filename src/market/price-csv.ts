/**
 * Streaming reader of price CSV files (`Time,Stock,Price`, the seed's format). Bad rows
 * are reported with their line number and skipped; the rest is read.
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { quote } from '../platform/quote.ts'
import { parsePriceText, stockNameProblem, type Tick, timeProblem } from './tick.ts'

/** The header every price CSV starts with. */
export const PRICE_CSV_HEADER = 'Time,Stock,Price'

/** One data line of a CSV: a tick, or an error naming the line. */
export type CsvRow = { line: number; tick: Tick } | { line: number; error: string }

/** Parses one data line (without its line terminator). */
export function parsePriceLine(text: string, line: number): CsvRow {
  const fields = text.split(',')
  if (fields.length !== 3) {
    return { line, error: `line ${line}: expected 3 columns (Time,Stock,Price), got ${fields.length}` }
  }
  const [time = '', stock = '', priceText = ''] = fields.map((f) => f.trim())
  const problem = timeProblem(time) ?? stockNameProblem(stock)
  if (problem) return { line, error: `line ${line}: ${problem}` }
  const price = parsePriceText(priceText)
  if (!price.ok) return { line, error: `line ${line}: ${price.reason}` }
  return { line, tick: { time, stock, price: price.price } }
}

/**
 * Reads a price CSV. Yields every data row in file order; blank lines are skipped. A
 * file whose first line is not the header throws before anything is yielded.
 */
export async function* readPriceCsv(path: string): AsyncGenerator<CsvRow> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })
  let line = 0
  for await (const raw of lines) {
    line++
    const text = line === 1 ? raw.replace(/^\uFEFF/, '') : raw
    if (line === 1) {
      if (text.trim().replace(/\s*,\s*/g, ',').toLowerCase() !== PRICE_CSV_HEADER.toLowerCase()) {
        throw new Error(`${path}: line 1 must be the header "${PRICE_CSV_HEADER}" (got ${quote(text)})`)
      }
      continue
    }
    if (text.trim() === '') continue
    yield parsePriceLine(text, line)
  }
  if (line === 0) throw new Error(`${path}: empty file, expected the header "${PRICE_CSV_HEADER}"`)
}

/** Formats a tick as a CSV data line. */
export function formatPriceLine(tick: Tick): string {
  return `${tick.time},${tick.stock},${tick.price === null ? '' : tick.price}`
}
