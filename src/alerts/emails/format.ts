/**
 * What the alert emails print, made safe and readable once, before any template sees it.
 * Titles and links come from eBay (outside input): a title loses its control characters
 * and line breaks (they could fake lines in the text part, or reorder text with bidi
 * controls) and is cut to a length a table can show; a link or image survives only as an
 * absolute http(s) URL. Prices are printed exactly as given (`12.50` stays `12.50`).
 */
import Big from 'big.js'
import { truncate } from '../../platform/quote.ts'

/** Longest title shown, in characters; eBay allows 80, the rest of the world may send more. */
export const TITLE_MAX_CHARS = 200
/** Longest phrase shown in a subject line. */
export const PHRASE_MAX_CHARS = 80
/** Longest URL kept; longer is no link eBay makes, and bloats every mail reader's view. */
const URL_MAX_CHARS = 2048

/**
 * C0 and C1 control characters (line breaks and tabs included), bidi embeddings,
 * overrides and isolates, zero-width and line/paragraph separators: none belongs in one
 * line of shown text.
 */
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+/g

/** `text` as one clean line: unprintable runs become a space, spaces collapse, cut to `max` characters. */
export function oneLine(text: string, max: number): string {
  const cleaned = text.replace(UNPRINTABLE, ' ').replace(/\s+/g, ' ').trim()
  return truncate(cleaned.toWellFormed(), max)
}

/** `text` as an absolute http(s) URL (normalised), or null when it is anything else (javascript:, data:, relative, too long). */
export function httpUrl(text: string | null | undefined): string | null {
  if (typeof text !== 'string' || text.length > URL_MAX_CHARS) return null
  let url: URL
  try {
    url = new URL(text.trim())
  } catch {
    return null
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null
  return url.href
}

/** Whether an amount is zero however it is written (`0`, `0.00`). */
function isZero(amount: string): boolean {
  return /^0+(\.0+)?$/.test(amount)
}

/** The shipping cost as shown: `free` for zero, `not given` when eBay gave none, else the amount and currency. */
export function shippingLabel(shipping: string | null, currency: string): string {
  if (shipping === null) return 'not given'
  const amount = oneLine(shipping, 40)
  return isZero(amount) ? 'free' : `${amount} ${currency}`
}

/** A plain decimal amount (`12.50`), the only form compared. */
const AMOUNT = /^\d+(\.\d+)?$/

/**
 * The lowest of the totals in `currency` (exact, with big.js), as written; undefined when
 * none is a plain decimal. Items in another currency are not compared with them.
 */
export function lowestTotal(items: ReadonlyArray<{ total: string; currency: string }>, currency: string): string | undefined {
  let lowest: string | undefined
  for (const item of items) {
    if (item.currency !== currency || !AMOUNT.test(item.total)) continue
    if (lowest === undefined || new Big(item.total).lt(lowest)) lowest = item.total
  }
  return lowest
}

/** A due time as the emails show it: `2026-03-04 05:06 UTC` (the reader's zone is unknown). */
export function formatDue(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

/** How often an alert runs, in words: `every minute`, `every 10 minutes`, `every 2 hours`, `every day`. */
export function frequencyText(minutes: number): string {
  if (minutes === 1) return 'every minute'
  if (minutes % 1440 === 0) return minutes === 1440 ? 'every day' : `every ${minutes / 1440} days`
  if (minutes % 60 === 0) return minutes === 60 ? 'every hour' : `every ${minutes / 60} hours`
  return `every ${minutes} minutes`
}

/** `1 item`, `20 items`. */
export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`
}
