/**
 * Bearer-token authentication mechanics for every HTTP service. {@link authPlugin}
 * resolves the token of every request into `request.principal` (null without a valid
 * one) through the `authenticate` function the service passes in; routes that need a
 * caller add {@link requireAuth}, and check ownership with {@link assertActsFor}. What a
 * token is and where it is looked up belongs to the service (see `src/auth`).
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { Forbidden, ServiceUnavailable, Unauthorized } from './errors.ts'
import { quote } from '../quote.ts'

/** Who is calling: the token, and the user it acts for (null for admin and application tokens). */
export interface Principal {
  tokenId: string
  userId: string | null
  admin: boolean
  /** The trusted application an event-intake token belongs to (The Eye); absent for user and admin tokens. */
  appId?: string
}

/** How one token is to be resolved, for {@link Authenticate}. */
export interface AuthenticateOptions {
  /**
   * Runs before the token store is asked (not when the answer is remembered or already on
   * its way); a rejection refuses the request without a lookup. The HTTP platform charges
   * the caller's address here, so made-up tokens cost queries only within its rate limit.
   */
  beforeLookup?: () => Promise<void>
  /** Ask the store even if an answer is remembered (re-checking a long-lived request). */
  fresh?: boolean
}

/** Resolves a bearer token to its principal; undefined when it is unknown or revoked. */
export type Authenticate = (token: string, options?: AuthenticateOptions) => Promise<Principal | undefined>

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, when the request carries a valid bearer token; null otherwise. */
    principal: Principal | null
  }
}

/**
 * An {@link Authenticate} answering the first principal any of `authenticators` finds,
 * asked in order (users' tokens, then applications', for instance). The options are
 * passed on to each; `beforeLookup` runs at most once, however many of them must ask.
 */
export function firstPrincipal(...authenticators: Authenticate[]): Authenticate {
  return async (token, options) => {
    const before = options?.beforeLookup
    let charged: Promise<void> | undefined
    const passed = before ? { ...options, beforeLookup: () => (charged ??= before()) } : options
    for (const authenticate of authenticators) {
      const principal = await authenticate(token, passed)
      if (principal) return principal
    }
    return undefined
  }
}

/** Name of the OpenAPI security scheme for bearer tokens. */
export const BEARER_SECURITY_SCHEME = 'bearer'

/** The bearer token of a request, if its `Authorization` header carries one. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer +([^\s]+) *$/i.exec(header)
  return match?.[1]
}

/**
 * Where browser pages are authenticated by a cookie: a browser navigating to a page cannot
 * send a bearer header, so under `path` the token may come from cookie `name` instead
 * (set by the admin login, see ./admin-session.ts). Elsewhere the cookie is ignored, so the
 * JSON API is never open to requests a browser makes on its own.
 */
export interface PageCookie {
  /** The cookie's name. */
  name: string
  /** The path the cookie counts under (`/admin`: that path and everything below it). */
  path: string
}

/** The value of cookie `name` in a `Cookie` header, if it is there. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const pair of header.split(';')) {
    const at = pair.indexOf('=')
    if (at < 0 || pair.slice(0, at).trim() !== name) continue
    const value = pair.slice(at + 1).trim()
    return value.startsWith('"') && value.endsWith('"') && value.length >= 2 ? value.slice(1, -1) : value
  }
  return undefined
}

/** Whether `url` is `path` or below it. */
function isUnder(url: string, path: string): boolean {
  const pathname = url.split('?')[0] ?? ''
  return pathname === path || pathname.startsWith(path.endsWith('/') ? path : `${path}/`)
}

/**
 * Whether a browser says the request comes from a page of this same origin: the cookie is
 * sent with any request to its path, so a change (POST, PUT, DELETE) it authenticates must
 * come from our own page, not from a form on another site (SameSite=Strict says the same
 * to browsers that honour it). `Sec-Fetch-Site` first, else `Origin` against `Host`.
 */
function isSameOrigin(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site']
  if (site !== undefined) return site === 'same-origin'
  const origin = request.headers.origin
  if (origin === undefined || request.headers.host === undefined) return false
  try {
    return new URL(origin).host === request.headers.host
  } catch {
    return false
  }
}

/** The token of a page request's cookie, when `cookie` applies to it (see {@link PageCookie}). */
function pageCookieToken(request: FastifyRequest, cookie: PageCookie | undefined): string | undefined {
  if (cookie === undefined || !isUnder(request.url, cookie.path)) return undefined
  const token = cookieValue(request.headers.cookie, cookie.name)
  if (token === undefined || token === '') return undefined
  const safe = request.method === 'GET' || request.method === 'HEAD'
  return safe || isSameOrigin(request) ? token : undefined
}

/**
 * Rejects a request without a valid token: 401 `unauthorized` with `WWW-Authenticate`.
 * Use as a route hook (`onRequest: requireAuth`); `request.principal` is then set.
 */
export async function requireAuth(request: FastifyRequest): Promise<void> {
  if (request.principal) return
  if (bearerToken(request) === undefined) throw new Unauthorized('a bearer token is required')
  throw new Unauthorized('the bearer token is unknown or revoked', { invalidToken: true })
}

/** The principal of a request that passed {@link requireAuth}. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Unauthorized('a bearer token is required')
  return request.principal
}

/** Throws 403 `forbidden` unless the principal may act for `userId` (its own user, or admin). */
export function assertActsFor(principal: Principal, userId: string): void {
  if (principal.admin || principal.userId === userId) return
  throw new Forbidden(`this token may not act for user ${quote(userId)}`)
}

/** Throws 403 `forbidden` unless the principal is an admin token. */
export function assertAdmin(principal: Principal): void {
  if (!principal.admin) throw new Forbidden('this needs an admin token')
}

/** Options for {@link authPlugin}. */
export interface AuthPluginOptions {
  /** Resolves a request's bearer token. */
  authenticate: Authenticate
  /**
   * Runs before a token has to be looked up (see {@link AuthenticateOptions.beforeLookup}):
   * throwing refuses the request. It may return a function, called when the token proves
   * valid, to give back what it charged. @defaultValue none: every lookup is made
   */
  beforeLookup?: (request: FastifyRequest, reply: FastifyReply) => Promise<(() => void) | undefined>
  /** Requests whose token is not looked up at all (their routes never read the caller). @defaultValue none */
  skip?: (request: FastifyRequest) => boolean
  /** Pages authenticated by a cookie instead of a bearer header. @defaultValue none: bearer tokens only */
  pageCookie?: PageCookie
  /**
   * How often the token of a response still open (an event stream) is checked again, in
   * ms; once it no longer authenticates, the response is ended. 0 never checks again.
   * @defaultValue 0
   */
  recheckMs?: number
}

function hasRequireAuth(route: RouteOptions): boolean {
  const hooks: unknown[] = [route.onRequest, route.preParsing, route.preValidation, route.preHandler].flat()
  return hooks.includes(requireAuth)
}

/**
 * Checks the token of an open response every `recheckMs` and ends the response once the
 * token no longer gives the same principal. A response whose headers are sent (a stream)
 * is ended at once; one still being prepared is left to finish (it was allowed when it
 * began) and checked again. A failed check keeps the response: the store being down says
 * nothing about the token, and `/health` reports it.
 */
function endWhenRevoked(
  request: FastifyRequest,
  reply: FastifyReply,
  authenticate: Authenticate,
  token: string,
  principal: Principal,
  recheckMs: number,
): void {
  const res = reply.raw
  let checking = false
  const timer = setInterval(() => {
    if (checking) return
    checking = true
    authenticate(token, { fresh: true })
      .then((now) => {
        if (now?.tokenId === principal.tokenId || !res.headersSent) return
        clearInterval(timer)
        request.log.info({ tokenId: principal.tokenId }, 'token revoked: its open response is ended')
        res.end()
      })
      .catch((err: unknown) => request.log.warn({ err }, 'token re-check failed; the response stays open'))
      .finally(() => {
        checking = false
      })
  }, recheckMs)
  // A finished response (every normal one, within milliseconds) stops its check.
  res.once('close', () => clearInterval(timer))
}

const auth: FastifyPluginAsync<AuthPluginOptions> = async (app, options) => {
  const { authenticate, beforeLookup, skip, pageCookie } = options
  const recheckMs = options.recheckMs ?? 0
  app.decorateRequest('principal', null)

  app.addHook('onRequest', async (request, reply) => {
    const token = bearerToken(request) ?? pageCookieToken(request, pageCookie)
    if (token === undefined || skip?.(request)) return
    let principal: Principal | undefined
    let refused: { err: unknown } | undefined
    let giveBack: (() => void) | undefined
    try {
      principal = await authenticate(
        token,
        beforeLookup && {
          beforeLookup: () =>
            beforeLookup(request, reply).then(
              (back) => {
                giveBack = back
              },
              (err: unknown) => {
                refused = { err }
                throw err
              },
            ),
        },
      )
    } catch (err) {
      // Refused before the lookup (the rate limit): that answer stands, it is no outage.
      if (refused) throw refused.err
      request.log.error({ err }, 'token lookup failed')
      throw new ServiceUnavailable('cannot check the bearer token now', 5, err)
    }
    request.principal = principal ?? null
    if (principal) giveBack?.()
    if (principal && recheckMs > 0) endWhenRevoked(request, reply, authenticate, token, principal, recheckMs)
  })

  // The swagger plugin reads route schemas when it builds the document, so a security
  // requirement added here (after swagger saw the route) still shows in /docs.
  app.addHook('onRoute', (route) => {
    if (!hasRequireAuth(route)) return
    route.schema = { ...route.schema, security: route.schema?.security ?? [{ [BEARER_SECURITY_SCHEME]: [] }] }
  })
}

/**
 * Sets `request.principal` from the bearer token (or, for pages, the `pageCookie`) before
 * any route hook runs (the rate limit keys on it), and documents the routes using {@link requireAuth} as needing a
 * bearer token in OpenAPI. A bad token is not an error here: public routes ignore it.
 * A token that must be looked up passes `beforeLookup` first, and a response still open
 * after `recheckMs` (an event stream) is ended once its token is revoked.
 */
export const authPlugin = fp(auth, { name: 'bourse-auth', fastify: '5.x' })
