/**
 * Money as exact integers of 1/10,000 (the precision of the `numeric(20,4)` columns), so
 * that `credit >= price x quantity` is decided without float rounding.
 */
import { quote } from '../platform/quote.ts'

const SCALE = 10_000n

/** A price, credit or amount (number or decimal text) in units of 1/10,000. */
export function toUnits(value: number | string): bigint {
  const text = typeof value === 'number' ? numberText(value) : value.trim()
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text)
  if (!match) throw new RangeError(`not a decimal amount: ${quote(value)}`)
  const [, sign, whole, fraction = ''] = match
  // Digits beyond the fourth are rounded half up, as numeric(20,4) does.
  const digits = `${fraction}00000`.slice(0, 5)
  let units = BigInt(whole!) * SCALE + BigInt(digits.slice(0, 4))
  if (Number(digits[4]) >= 5) units += 1n
  return sign === '-' ? -units : units
}

/** Units back to a JSON number (exact for the magnitudes of prices and credits). */
export function fromUnits(units: bigint): number {
  return Number(units) / Number(SCALE)
}

/** Units as decimal text for SQL (`12.3400`). */
export function unitsText(units: bigint): string {
  const negative = units < 0n
  const abs = negative ? -units : units
  const fraction = (abs % SCALE).toString().padStart(4, '0')
  return `${negative ? '-' : ''}${abs / SCALE}.${fraction}`
}

/** A numeric column's text (pg returns numeric as a string) as a JSON number. */
export function decimalNumber(text: string | number): number {
  return typeof text === 'number' ? text : fromUnits(toUnits(text))
}

function numberText(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`not a finite amount: ${value}`)
  // toFixed avoids exponent notation for large or tiny numbers.
  return Math.abs(value) >= 1e21 ? BigInt(Math.round(value)).toString() : value.toFixed(6)
}

/** Most digits before the decimal point a `numeric(20,4)` column holds. */
const MAX_WHOLE_DIGITS = 16
/** Digits after the decimal point a `numeric(20,4)` column keeps (more are rounded). */
const MAX_DECIMALS = 4

/** A decimal number as sign, significant digits (no leading or trailing zeros) and power of ten. */
interface Decimal {
  negative: boolean
  /** Empty for zero. */
  digits: string
  exponent: number
}

function decompose(text: string): Decimal | undefined {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text.trim())
  if (!match) return undefined
  const [, sign, whole = '', fraction = '', exponent = '0'] = match
  const significant = `${whole}${fraction}`.replace(/^0+/, '')
  const digits = significant.replace(/0+$/, '')
  if (digits === '') return { negative: false, digits: '', exponent: 0 }
  return { negative: sign === '-', digits, exponent: Number(exponent) - fraction.length + significant.length - digits.length }
}

function plainText({ negative, digits, exponent }: Decimal): string {
  if (digits === '') return '0'
  let body: string
  if (exponent >= 0) body = `${digits}${'0'.repeat(exponent)}`
  else {
    const padded = digits.padStart(1 - exponent, '0')
    body = `${padded.slice(0, exponent)}.${padded.slice(exponent)}`
  }
  return negative ? `-${body}` : body
}

/**
 * A number's text (JSON or SQL form, exponent allowed) as the plain decimal text that a
 * `numeric(20,4)` column holds exactly, or why it cannot: 10^16 or more overflows the
 * column, and a fifth decimal would be rounded away. Checked on the text, so that no
 * digit is lost to float rounding on the way.
 */
export function exactAmountText(text: string): { ok: true; text: string } | { ok: false; reason: string } {
  const decimal = decompose(text)
  if (!decimal) return { ok: false, reason: 'is not a decimal number' }
  if (decimal.digits !== '' && decimal.exponent < -MAX_DECIMALS) {
    return { ok: false, reason: `has more than ${MAX_DECIMALS} decimals (an account would round it)` }
  }
  if (decimal.digits.length + decimal.exponent > MAX_WHOLE_DIGITS) {
    return { ok: false, reason: `is 10^${MAX_WHOLE_DIGITS} or more (an account holds at most ${MAX_WHOLE_DIGITS} digits before the decimal point)` }
  }
  return { ok: true, text: plainText(decimal) }
}

/**
 * A numeric column's text as JSON number text, exactly (`12.5000` gives `12.5`): unlike
 * {@link decimalNumber}, no digit of a 20-digit amount is lost to float rounding.
 */
export function decimalJson(value: string | number): string {
  if (typeof value === 'number') return JSON.stringify(value)
  const decimal = decompose(value)
  if (!decimal) throw new RangeError(`not a decimal amount: ${quote(value)}`)
  return plainText(decimal)
}
