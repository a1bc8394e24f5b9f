/**
 * Small server-rendered HTML pages (a login form, an unsubscribe confirmation): one look,
 * no script, every value escaped. Their one style sheet is inline and allowed by its hash
 * in the page's own Content-Security-Policy, so the page needs nothing from elsewhere and
 * no `'unsafe-inline'`.
 */
import { createHash } from 'node:crypto'
import type { FastifyReply } from 'fastify'

/** `text` with the characters that mean something in HTML (text or attribute value) escaped. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

const STYLE = `
body { font: 16px/1.5 system-ui, sans-serif; color: #1d232b; background: #f4f6f8; margin: 0; }
main { max-width: 32rem; margin: 4rem auto; padding: 2rem; background: #fff; border-radius: 8px; box-shadow: 0 1px 4px #0002; }
h1 { font-size: 1.4rem; margin-top: 0; }
label { display: block; margin: 1rem 0 .25rem; }
input[type=password], input[type=text] { width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }
button { margin-top: 1rem; padding: .5rem 1.25rem; font: inherit; cursor: pointer; }
.error { color: #a4161a; }
`

/** The Content-Security-Policy of every page made by {@link htmlPage}: nothing but its own style and forms to itself. */
export const PAGE_CSP =
  `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; ` +
  "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

/** A whole page: `title` (text, escaped here) and `body` (HTML the caller escaped). */
export function htmlPage(title: string, body: string): string {
  return (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="robots" content="noindex">\n' +
    `<title>${escapeHtml(title)}</title>\n<style>${STYLE}</style>\n</head>\n<body>\n<main>\n${body}\n</main>\n</body>\n</html>\n`
  )
}

/** Answers `status` with `page` (from {@link htmlPage}) and its Content-Security-Policy. */
export function sendPage(reply: FastifyReply, status: number, page: string): FastifyReply {
  return reply
    .code(status)
    .header('content-security-policy', PAGE_CSP)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(page)
}

/** Whether the client asked for HTML (a browser) rather than JSON. */
export function acceptsHtml(accept: string | undefined): boolean {
  if (accept === undefined) return false
  // The first of text/html and application/json the client lists wins: browsers list
  // text/html first, API clients list (or only send) application/json.
  const types = accept.split(',').map((part) => part.split(';')[0]?.trim().toLowerCase())
  const html = types.indexOf('text/html')
  const json = types.indexOf('application/json')
  return html >= 0 && (json < 0 || html < json)
}
