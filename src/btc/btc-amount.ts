/**
 * BTC order arithmetic, exact: decimal strings in, decimal strings out, through integers
 * (a decimal's digits as a bigint, and its number of decimals; never a binary float).
 *
 * The rounding rule: `btc_amount = amount / price`, cut to 8 decimals toward zero
 * (ROUND_DOWN). Rounding down means the BTC a buyer is given is never more than the fiat
 * paid for, and the cap (a sum of these amounts) is never crossed by rounding: rounding half
 * up could hand out up to 0.000000005 BTC more than was paid for, on every order.
 */

/** Decimals of a BTC amount (satoshis). */
export const BTC_DECIMALS = 8
/** Decimals of a fiat amount. */
export const FIAT_DECIMALS = 2
/** What {@link btcAmount} returns for an amount too small to buy 1 satoshi. */
export const ZERO_BTC = '0.00000000'
/** Fiat amounts must be below this. */
export const MAX_FIAT_AMOUNT = '1000000000'

const PLAIN_DECIMAL = /^\d+(?:\.\d+)?$/

/** A plain decimal's digits as an integer and how many of them are decimals (`"61234.50"` → 6123450n, 2). */
interface Scaled {
  digits: bigint
  decimals: number
}

/** `text` (a plain decimal, or a RangeError naming `what`) as a {@link Scaled}. */
function scaled(text: string, what: string): Scaled {
  if (!PLAIN_DECIMAL.test(text)) throw new RangeError(`${what} is not a plain decimal: ${JSON.stringify(text)}`)
  const dot = text.indexOf('.')
  return dot < 0 ? { digits: BigInt(text), decimals: 0 } : { digits: BigInt(text.slice(0, dot) + text.slice(dot + 1)), decimals: text.length - dot - 1 }
}

/** A positive price as a {@link Scaled}; the last one is kept, since orders of a quote all divide by its price. */
let lastPrice: { text: string; value: Scaled } | undefined
function scaledPrice(price: string): Scaled {
  if (lastPrice?.text === price) return lastPrice.value
  const value = scaled(price, 'price')
  if (value.digits <= 0n) throw new RangeError(`price must be positive: ${JSON.stringify(price)}`)
  lastPrice = { text: price, value }
  return value
}

/** A non-negative integer count of 10^-decimals units as decimal text (`12345n, 2` → `"123.45"`). */
function decimalText(units: bigint, decimals: number): string {
  const text = units.toString().padStart(decimals + 1, '0')
  return `${text.slice(0, -decimals)}.${text.slice(-decimals)}`
}

/**
 * The BTC bought by `amount` fiat at `price` fiat per BTC: `amount / price` to 8 decimals,
 * rounded toward zero, as text with exactly 8 decimals (`"0.00163306"`). Both must be
 * positive plain decimals (a RangeError otherwise).
 *
 * With a = A / 10^m and p = P / 10^n, the satoshis are floor(A * 10^(n + 8) / (P * 10^m)):
 * one integer division, whose quotient bigint truncates (toward zero: both are positive).
 */
export function btcAmount(amount: string, price: string): string {
  const a = scaled(amount, 'amount')
  const p = scaledPrice(price)
  const satoshis = (a.digits * 10n ** BigInt(p.decimals + BTC_DECIMALS)) / (p.digits * 10n ** BigInt(a.decimals))
  return decimalText(satoshis, BTC_DECIMALS)
}

/**
 * The smallest fiat amount that buys at least 1 satoshi at `price`: price / 10^8, rounded
 * up to 2 decimals (a smaller amount would buy 0 BTC under the rounding rule).
 */
export function smallestFiatAmount(price: string): string {
  const p = scaledPrice(price)
  // cents = ceil(P * 10^2 / (10^n * 10^8)).
  const divisor = 10n ** BigInt(p.decimals + BTC_DECIMALS)
  const cents = (p.digits * 10n ** BigInt(FIAT_DECIMALS) + divisor - 1n) / divisor
  return decimalText(cents, FIAT_DECIMALS)
}

/** The outcome of {@link parseFiatAmount}: the amount as text with 2 decimals, or why not. */
export type FiatAmountResult = { ok: true; value: string } | { ok: false; message: string }

/**
 * A buy order's fiat amount: 0 < amount < 1,000,000,000 with at most 2 decimals, given as a
 * JSON number (its digits as written, see `numberText` of `../platform/http/json-body.ts`)
 * or a decimal string. Returns it as `"123.40"`, or the reason it is refused.
 */
export function parseFiatAmount(value: unknown): FiatAmountResult {
  let text: string
  if (typeof value === 'string') text = value.trim()
  else if (typeof value === 'number' && Number.isFinite(value)) text = String(value)
  else return { ok: false, message: 'must be a number or a decimal string, such as 250.50' }
  if (!PLAIN_DECIMAL.test(text)) return { ok: false, message: 'must be a plain decimal, such as 250.50 (no sign, exponent or spaces)' }
  const [whole = '', fraction = ''] = text.split('.')
  if (fraction.length > FIAT_DECIMALS) return { ok: false, message: `must have at most ${FIAT_DECIMALS} decimals` }
  // The whole part without leading zeros (one digit at least): below 10^9 when at most 9 digits long.
  const wholeDigits = whole.replace(/^0+(?=\d)/, '')
  const cents = fraction.padEnd(FIAT_DECIMALS, '0')
  if (wholeDigits === '0' && /^0*$/.test(cents)) return { ok: false, message: 'must be greater than 0' }
  if (wholeDigits.length >= MAX_FIAT_AMOUNT.length) return { ok: false, message: 'must be less than 1000000000' }
  return { ok: true, value: `${wholeDigits}.${cents}` }
}
