/**
 * Outside input (a CSV line, a fixture line, a Kafka key or value, a command-line or
 * environment value) quoted in error and log messages. A hostile or broken input can be
 * huge: a 50 MB bad line must make a short message naming its line, not a 50 MB one.
 */

/** How many characters of an input {@link quote} shows by default. */
export const QUOTE_MAX_CHARS = 100

/**
 * `text` cut to at most `max` characters (UTF-16 units), ending with `…` when cut. A
 * surrogate pair is never split, so the result stays well-formed text.
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text
  return `${head(text, Math.max(0, max - 1))}…`
}

/**
 * Quotes input for an error or log message: as a JSON string literal, so that newlines
 * and control characters are escaped and cannot fake a log line or drive a terminal, and
 * cut after `max` characters. A cut quote is followed by `…` and the input's full length:
 * `"xxxx"… (52428800 characters)`. Input of at most `max` characters gives exactly
 * `JSON.stringify(input)`; a value that is not a string (an unset variable, a null id)
 * gives its JSON text, cut the same way.
 */
export function quote(input: unknown, max: number = QUOTE_MAX_CHARS): string {
  if (typeof input !== 'string') return truncate(String(JSON.stringify(input)), max)
  if (input.length <= max) return JSON.stringify(input)
  return `${JSON.stringify(head(input, max))}… (${input.length} characters)`
}

/** The first `n` UTF-16 units of `text`, one fewer rather than half a surrogate pair. */
function head(text: string, n: number): string {
  const code = text.charCodeAt(n - 1)
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n)
}
