/**
 * The alerts' time grid. The scheduler ticks every `tickMs` (2 minutes by default); every
 * frequency is a multiple of it, so every due time falls on a tick. An alert's first run is
 * at the first tick after it was created (or resumed), and the next ones follow every
 * `frequency_minutes` from there: alerts created at different times spread over the ticks
 * instead of all coming due at the same one.
 */

/** Milliseconds in a minute. */
const MINUTE_MS = 60_000

/** The first tick strictly after `now` (ms since the epoch). */
export function nextTickAfter(now: number, tickMs: number): Date {
  return new Date((Math.floor(now / tickMs) + 1) * tickMs)
}

/** Throws unless `tickMs` divides every frequency an alert may have (2, 10 and 30 minutes). */
export function assertTickFitsFrequencies(tickMs: number): void {
  if (!Number.isInteger(tickMs) || tickMs < 1 || (2 * MINUTE_MS) % tickMs !== 0) {
    throw new RangeError(`the alerts tick must divide 2 minutes (120000 ms) so that every due time is a tick (got ${tickMs})`)
  }
}
