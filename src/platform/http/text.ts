/**
 * Text PostgreSQL cannot store. A `text` or `jsonb` value refuses U+0000 (NUL): the query
 * fails, which the API would answer with a 500. An unpaired UTF-16 surrogate
 * (`"\ud800"`) is refused by `jsonb` and silently turned into U+FFFD by the driver's
 * UTF-8 encoding of a `text` parameter, so what is stored is not what was sent. Neither
 * has a use in an API request, so the HTTP platform refuses both wherever they appear:
 * in the query string and path parameters (see the validator in `./app.ts`) and anywhere
 * in a JSON body, keys included ({@link unstorableJsonError}).
 */
import { BadRequest } from './errors.ts'

/** Why a string cannot be stored, or undefined when it can. */
export function unstorableReason(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain U+0000 (NUL)'
  if (!text.isWellFormed()) return 'must not contain an unpaired UTF-16 surrogate'
  return undefined
}

/** A JSON pointer segment, escaped (RFC 6901). */
const pointerSegment = (key: string | number) => String(key).replaceAll('~', '~0').replaceAll('/', '~1')

/**
 * The first string of `value` (a key or a value, at any depth) PostgreSQL cannot store,
 * as a JSON pointer (`/data/k/0`) and the reason; undefined when there is none. Walks
 * without recursion, so a deeply nested value cannot overflow the stack.
 */
export function findUnstorableText(value: unknown): { pointer: string; message: string } | undefined {
  const stack: Array<{ value: unknown; pointer: string }> = [{ value, pointer: '' }]
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const { value: node, pointer } = next
    if (typeof node === 'string') {
      const message = unstorableReason(node)
      if (message !== undefined) return { pointer, message }
    } else if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push({ value: node[i], pointer: `${pointer}/${i}` })
    } else if (typeof node === 'object' && node !== null) {
      const keys = Object.keys(node)
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!
        const child = `${pointer}/${pointerSegment(key)}`
        const message = unstorableReason(key)
        if (message !== undefined) return { pointer: child, message: `key ${message}` }
        stack.push({ value: (node as Record<string, unknown>)[key], pointer: child })
      }
    }
  }
  return undefined
}

/**
 * For a JSON body: the 400 `validation_failed` naming the first string PostgreSQL cannot
 * store (`body.data.k`), or undefined. JSON text holds a NUL or an unpaired surrogate only
 * through a `\u` escape (a raw control character is a syntax error, and the body was
 * decoded from UTF-8), so a well-formed text without one is not walked at all: the
 * intake's large bodies pay one scan of their text.
 */
export function unstorableJsonError(text: string, parsed: unknown): BadRequest | undefined {
  if (!text.includes('\\u') && text.isWellFormed()) return undefined
  const found = findUnstorableText(parsed)
  if (found === undefined) return undefined
  const field = `body${readablePointer(found.pointer)}`
  return new BadRequest(`invalid request: ${field}`, [{ field, message: found.message }], 'validation_failed')
}

/** Turns a JSON pointer (`/items/0/price`) into a readable path (`.items[0].price`). */
export function readablePointer(pointer: string): string {
  let path = ''
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~')
    path += /^\d+$/.test(segment) ? `[${segment}]` : `.${segment}`
  }
  return path
}
