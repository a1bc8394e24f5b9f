/**
 * BTC order arithmetic, exact: decimal strings in, decimal strings out, through big.js
 * (never a binary float).
 *
 * The rounding rule: `btc_amount = amount / price`, cut to 8 decimals toward zero
 * (ROUND_DOWN). Rounding down means the BTC a buyer is given is never more than the fiat
 * paid for, and the cap (a sum of these amounts) is never crossed by rounding: rounding half
 * up could hand out up to 0.000000005 BTC more than was paid for, on every order.
 */
import Big from 'big.js'

/** Decimals of a BTC amount (satoshis). */
export const BTC_DECIMALS = 8
/** Decimals of a fiat amount. */
export const FIAT_DECIMALS = 2
/** What {@link btcAmount} returns for an amount too small to buy 1 satoshi. */
export const ZERO_BTC = '0.00000000'
/** Fiat amounts must be below this. */
export const MAX_FIAT_AMOUNT = '1000000000'

/** big.js with its own settings: division to 8 decimals, rounded toward zero. */
const BtcBig = Big()
BtcBig.DP = BTC_DECIMALS
BtcBig.RM = Big.roundDown

const PLAIN_DECIMAL = /^\d+(?:\.\d+)?$/

/**
 * The BTC bought by `amount` fiat at `price` fiat per BTC: `amount / price` to 8 decimals,
 * rounded toward zero, as text with exactly 8 decimals (`"0.00163306"`). Both must be
 * positive plain decimals (a RangeError otherwise).
 */
export function btcAmount(amount: string, price: string): string {
  if (!PLAIN_DECIMAL.test(amount)) throw new RangeError(`amount is not a plain decimal: ${JSON.stringify(amount)}`)
  if (!PLAIN_DECIMAL.test(price)) throw new RangeError(`price is not a plain decimal: ${JSON.stringify(price)}`)
  const divisor = new BtcBig(price)
  if (divisor.lte(0)) throw new RangeError(`price must be positive: ${JSON.stringify(price)}`)
  return new BtcBig(amount).div(divisor).toFixed(BTC_DECIMALS, Big.roundDown)
}

/**
 * The smallest fiat amount that buys at least 1 satoshi at `price`: price / 10^8, rounded
 * up to 2 decimals (a smaller amount would buy 0 BTC under the rounding rule).
 */
export function smallestFiatAmount(price: string): string {
  if (!PLAIN_DECIMAL.test(price)) throw new RangeError(`price is not a plain decimal: ${JSON.stringify(price)}`)
  return new Big(price).div(10 ** BTC_DECIMALS).round(FIAT_DECIMALS, Big.roundUp).toFixed(FIAT_DECIMALS)
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
  const [, fraction = ''] = text.split('.')
  if (fraction.length > FIAT_DECIMALS) return { ok: false, message: `must have at most ${FIAT_DECIMALS} decimals` }
  const amount = new Big(text)
  if (amount.lte(0)) return { ok: false, message: 'must be greater than 0' }
  if (amount.gte(MAX_FIAT_AMOUNT)) return { ok: false, message: 'must be less than 1000000000' }
  return { ok: true, value: amount.toFixed(FIAT_DECIMALS) }
}
