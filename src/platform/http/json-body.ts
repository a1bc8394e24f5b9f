/**
 * The API's JSON body parser, written once: Fastify's own (which refuses `__proto__` and
 * `constructor.prototype` keys), then the refusal of text PostgreSQL cannot store (see
 * ./text.ts). A route plugin may ask for the source text of some numbers: JSON numbers
 * are doubles once parsed, so a price sent as `0.1` or `12.345678901234567` would reach the
 * route already rounded; with `numberText`, those fields carry the digits as written.
 */
import type { FastifyBodyParser, FastifyInstance } from 'fastify'
import { unstorableJsonError } from './text.ts'

/** Options of {@link jsonBodyParser}. */
export interface JsonBodyParserOptions {
  /**
   * Top-level fields whose JSON number is replaced by its source text (`1.10` stays
   * `"1.10"`, `1e3` stays `"1e3"`), for exact decimals. Strings and other types are left
   * as sent. @defaultValue none
   */
  numberText?: readonly string[]
}

/** A JSON number's text as written, for `JSON.parse` revivers (ES2025 source text access). */
interface ReviverContext {
  source?: string
}

/**
 * The source text of each of `fields` that is a number at the top level of the object
 * `text` holds. A second parse, made only when such a number is there: the reviver is
 * called for every value, which would cost every body of the route.
 */
function topLevelNumberTexts(text: string, fields: ReadonlySet<string>): Map<string, string> {
  const found = new Map<object, Map<string, string>>()
  const root: unknown = JSON.parse(text, function (this: object, key: string, value: unknown, context?: ReviverContext) {
    if (typeof value === 'number' && fields.has(key) && context?.source !== undefined) {
      let texts = found.get(this)
      if (!texts) found.set(this, (texts = new Map()))
      texts.set(key, context.source)
    }
    return value
  })
  return (typeof root === 'object' && root !== null && found.get(root)) || new Map()
}

/** The parser of `application/json` bodies for `app` (register it with `parseAs: 'string'`). */
export function jsonBodyParser(app: FastifyInstance, options: JsonBodyParserOptions = {}): FastifyBodyParser<string> {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  const numberText = new Set(options.numberText ?? [])
  return (request, body, done) => {
    const text = String(body)
    // The default parser calls back at once; it returns nothing to wait for.
    void parseJson(request, text, (err: Error | null, parsed?: unknown) => {
      if (err) return done(err, undefined)
      const unstorable = unstorableJsonError(text, parsed)
      if (unstorable) return done(unstorable, undefined)
      if (numberText.size > 0 && typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        const fields = parsed as Record<string, unknown>
        if ([...numberText].some((field) => typeof fields[field] === 'number')) {
          for (const [field, source] of topLevelNumberTexts(text, numberText)) fields[field] = source
        }
      }
      done(null, parsed)
    })
  }
}
