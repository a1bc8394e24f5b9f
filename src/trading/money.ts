/**
 * Money as exact integers of 1/10,000 (the precision of the `numeric(20,4)` columns), so
 * that `credit >= price x quantity` is decided without float rounding.
 */

const SCALE = 10_000n

/** A price, credit or amount (number or decimal text) in units of 1/10,000. */
export function toUnits(value: number | string): bigint {
  const text = typeof value === 'number' ? numberText(value) : value.trim()
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text)
  if (!match) throw new RangeError(`not a decimal amount: ${JSON.stringify(value)}`)
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
