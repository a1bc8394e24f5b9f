/**
 * Signing in to the admin pages that a browser navigates to (the queue board), which
 * cannot send a bearer header as the API's clients do. `/admin/login` takes an admin
 * token once, checks it, and keeps it in an HttpOnly, SameSite=Strict cookie for `/admin`
 * only; the auth plugin then reads the token from that cookie for requests under `/admin`
 * (see `PageCookie` in ./auth.ts), so the token is checked like a bearer token on every
 * request (revoking it ends the session within `AUTH_CACHE_MS`) and the rate limit counts
 * it as the token's. Pages that need an admin add {@link requireAdminPage}.
 *
 * The cookie holds the token itself rather than a session of our own: nothing more to
 * store or expire, and a revoked token is refused at once.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import type { Authenticate, PageCookie } from './auth.ts'
import { FORM_MEDIA_TYPE, formBodyParser } from './form-body.ts'
import { escapeHtml, htmlPage, sendPage } from './html.ts'

/** The cookie carrying an admin's token to the pages under `/admin`. */
export const ADMIN_COOKIE: PageCookie = Object.freeze({ name: 'bourse_admin', path: '/admin' })
/** The sign-in page. */
export const ADMIN_LOGIN_PATH = '/admin/login'
/** Signs out (clears the cookie) and goes back to the sign-in page. */
export const ADMIN_LOGOUT_PATH = '/admin/logout'

/** Options of {@link adminLoginRoutes}. */
export interface AdminLoginOptions {
  /** Resolves the token typed in (the API's own authenticator). */
  authenticate: Authenticate
  /** Where a sign-in goes when it names no page (`/admin/queues`). */
  landing: string
  /** How long the cookie lasts, in seconds. @defaultValue 43200 (12 hours) */
  maxAgeSeconds?: number
}

/** What may stand in a cookie value (RFC 6265 cookie-octet); our tokens are base64url. */
const COOKIE_SAFE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,512}$/

/** `next` when it is a page under `/admin` (never another site, never `//host`); `landing` otherwise. */
function localPage(next: string | undefined, landing: string): string {
  if (next === undefined || !/^\/admin(\/[^\\\s]*)?(\?[^\\\s]*)?$/.test(next) || next.startsWith('//')) return landing
  return next === ADMIN_LOGIN_PATH || next.startsWith(`${ADMIN_LOGIN_PATH}?`) ? landing : next
}

function loginPage(next: string, message?: string): string {
  return htmlPage(
    'Bourse admin sign-in',
    '<h1>Bourse admin</h1>\n' +
      (message === undefined ? '' : `<p class="error" role="alert">${escapeHtml(message)}</p>\n`) +
      `<form method="post" action="${ADMIN_LOGIN_PATH}">\n` +
      '<label for="token">Admin token</label>\n' +
      '<input id="token" name="token" type="password" autocomplete="off" spellcheck="false" placeholder="bourse_..." required autofocus>\n' +
      `<input type="hidden" name="next" value="${escapeHtml(next)}">\n` +
      '<button type="submit">Sign in</button>\n</form>',
  )
}

function cookieHeader(request: FastifyRequest, value: string, maxAgeSeconds: number): string {
  // Secure only over HTTPS: browsers drop a Secure cookie set over plain HTTP (a local API).
  const secure = request.protocol === 'https' ? '; Secure' : ''
  return `${ADMIN_COOKIE.name}=${value}; Path=${ADMIN_COOKIE.path}; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure}`
}

/** `GET|POST /admin/login` and `GET /admin/logout`, hidden from the OpenAPI document. */
export function adminLoginRoutes(options: AdminLoginOptions): FastifyPluginAsyncTypebox {
  const { authenticate, landing } = options
  const maxAgeSeconds = options.maxAgeSeconds ?? 43_200
  return async (app) => {
    app.addContentTypeParser(FORM_MEDIA_TYPE, { parseAs: 'string' }, formBodyParser)

    app.get(
      ADMIN_LOGIN_PATH,
      { schema: { hide: true, querystring: Type.Object({ next: Type.Optional(Type.String({ maxLength: 2048 })) }) } },
      async (request, reply) => sendPage(reply, 200, loginPage(localPage(request.query.next, landing))),
    )

    app.post(
      ADMIN_LOGIN_PATH,
      {
        schema: {
          hide: true,
          body: Type.Object(
            { token: Type.String({ maxLength: 1024 }), next: Type.Optional(Type.String({ maxLength: 2048 })) },
            { additionalProperties: false },
          ),
        },
      },
      async (request, reply) => {
        const next = localPage(request.body.next, landing)
        const token = request.body.token.trim()
        if (token === '') return sendPage(reply, 400, loginPage(next, 'Enter an admin token.'))
        const principal = COOKIE_SAFE.test(token) ? await authenticate(token) : undefined
        if (!principal) return sendPage(reply, 401, loginPage(next, 'This token is unknown or revoked.'))
        if (!principal.admin) return sendPage(reply, 403, loginPage(next, 'This is not an admin token.'))
        request.log.info({ tokenId: principal.tokenId }, 'admin signed in to the admin pages')
        return reply.header('set-cookie', cookieHeader(request, token, maxAgeSeconds)).redirect(next, 303)
      },
    )

    app.get(ADMIN_LOGOUT_PATH, { schema: { hide: true } }, async (request, reply) =>
      reply.header('set-cookie', cookieHeader(request, '', 0)).redirect(ADMIN_LOGIN_PATH, 303),
    )
  }
}

/**
 * A route hook for admin pages: lets an admin through (cookie or bearer), sends a browser
 * navigating without one to the sign-in page (coming back afterwards), and answers other
 * requests 401 (403 for a token that is not an admin's) in the API's error shape. It
 * answers itself rather than throwing, so a plugin's own error handler (the queue
 * board's) cannot reshape the refusal.
 */
export async function requireAdminPage(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  const principal = request.principal
  if (principal?.admin) return undefined
  if (principal) {
    return reply.code(403).send({ error: { code: 'forbidden', message: 'this needs an admin token' } })
  }
  const navigating = (request.method === 'GET' || request.method === 'HEAD') && (request.headers.accept ?? '').includes('text/html')
  if (navigating) return reply.redirect(`${ADMIN_LOGIN_PATH}?next=${encodeURIComponent(request.url)}`, 303)
  return reply
    .code(401)
    .header('www-authenticate', 'Bearer realm="bourse"')
    .send({ error: { code: 'unauthorized', message: `an admin token is required: sign in at ${ADMIN_LOGIN_PATH}` } })
}
