/** The performance metric of a stock, computed from its price history. */

/**
 * Percent change from the first reported price of a history to the last one, rounded to
 * 4 decimals. Empty entries (`''`, no data reported) are skipped; with no price, or a
 * first price of 0 (no base to compare with), the change is 0.
 */
export function percentChange(prices: ReadonlyArray<number | ''>): number {
  let first: number | undefined
  let last: number | undefined
  for (const price of prices) {
    if (typeof price !== 'number' || !Number.isFinite(price)) continue
    first ??= price
    last = price
  }
  if (first === undefined || last === undefined || first === 0) return 0
  const rounded = Math.round(((last - first) / first) * 100 * 10_000) / 10_000
  // Math.round gives -0 for tiny losses; the contract wants a plain 0.
  return rounded === 0 ? 0 : rounded
}
