/**
 * HTML forms' bodies (`application/x-www-form-urlencoded`), for the few routes a browser
 * or a mail client posts a form to (a login page, a one-click unsubscribe). The API
 * otherwise speaks JSON only, so a plugin registers this parser in its own context.
 */
import type { FastifyBodyParser } from 'fastify'
import { BadRequest } from './errors.ts'
import { findUnstorableText, readablePointer } from './text.ts'

/** The media type of a form body. */
export const FORM_MEDIA_TYPE = 'application/x-www-form-urlencoded'

/**
 * Parses a form body into its fields, as text. A field given twice is refused (which one
 * would count is a guess), and so is text PostgreSQL cannot store (`%00`), each with a 400
 * naming the field, as for JSON bodies.
 */
export const formBodyParser: FastifyBodyParser<string> = (_request, body, done) => {
  const fields: Record<string, string> = {}
  for (const [name, value] of new URLSearchParams(String(body))) {
    if (Object.hasOwn(fields, name)) {
      const field = `body.${name}`
      return done(new BadRequest(`invalid request: ${field}`, [{ field, message: 'is given more than once' }], 'validation_failed'))
    }
    fields[name] = value
  }
  const unstorable = findUnstorableText(fields)
  if (unstorable) {
    const field = `body${readablePointer(unstorable.pointer)}`
    return done(new BadRequest(`invalid request: ${field}`, [{ field, message: unstorable.message }], 'validation_failed'))
  }
  done(null, fields)
}
