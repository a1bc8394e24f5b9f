/**
 * Bearer-token authentication for the HTTP API. {@link authPlugin} resolves the token of
 * every request into `request.principal` (null without a valid one); routes that need a
 * caller add {@link requireAuth}, and check ownership with {@link assertActsFor}.
 */
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Db } from '../platform/db/index.ts'
import { Forbidden, ServiceUnavailable, Unauthorized } from '../platform/http/errors.ts'
import { findActiveTokenByHash, hashApiToken, isApiTokenFormat } from './api-tokens.repository.ts'

/** Who is calling: the token, and the user it acts for (null for admin and application tokens). */
export interface Principal {
  tokenId: string
  userId: string | null
  admin: boolean
  /** The trusted application an event-intake token belongs to (The Eye); absent for user and admin tokens. */
  appId?: string
}

/** Resolves a bearer token to its principal; undefined when it is unknown or revoked. */
export type Authenticate = (token: string) => Promise<Principal | undefined>

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, when the request carries a valid bearer token; null otherwise. */
    principal: Principal | null
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

/** Options for {@link createTokenAuthenticator}. */
export interface TokenAuthenticatorOptions {
  /** How long a lookup is trusted, in ms; 0 asks PostgreSQL every time. A revocation takes up to this long to apply. */
  cacheMs: number
  /** Most lookups kept; the oldest go first. @defaultValue 10000 */
  maxEntries?: number
  /** The clock, in ms. @defaultValue Date.now */
  now?: () => number
}

/** An {@link Authenticate} backed by `api_tokens`, with a small in-process cache. */
export interface TokenAuthenticator extends Authenticate {
  /** Forgets every cached lookup (after a revocation in this process, for instance). */
  clear(): void
}

/** How a kind of token is recognized and looked up, for {@link createCachedAuthenticator}. */
export interface TokenLookup {
  /** Whether the token has this kind's shape: anything else is refused without a query. */
  accepts(token: string): boolean
  /** The principal of a token's SHA-256, or undefined when it is unknown or revoked. */
  lookup(tokenHash: string): Promise<Principal | undefined>
}

/**
 * An {@link Authenticate} keeping each answer (found or not) for `cacheMs`, so a busy
 * client does not cost a query per request. Concurrent lookups of the same token share
 * one query, and a failed lookup is forgotten. The cache is keyed by the token's hash, so
 * it holds no secrets beyond what the table holds.
 */
export function createCachedAuthenticator(source: TokenLookup, options: TokenAuthenticatorOptions): TokenAuthenticator {
  const { cacheMs } = options
  const maxEntries = options.maxEntries ?? 10_000
  const now = options.now ?? Date.now
  const cache = new Map<string, { expiresAt: number; result: Promise<Principal | undefined> }>()

  const authenticate = (token: string): Promise<Principal | undefined> => {
    if (!source.accepts(token)) return Promise.resolve(undefined)
    const tokenHash = hashApiToken(token)
    if (cacheMs <= 0) return source.lookup(tokenHash)
    const at = now()
    const cached = cache.get(tokenHash)
    if (cached && cached.expiresAt > at) return cached.result
    // Deleting before setting moves the entry to the end, so the first key is the oldest.
    cache.delete(tokenHash)
    const entry = { expiresAt: at + cacheMs, result: source.lookup(tokenHash) }
    cache.set(tokenHash, entry)
    while (cache.size > maxEntries) {
      const oldest = cache.keys().next().value
      if (oldest === undefined) break
      cache.delete(oldest)
    }
    // A failed lookup must not be remembered: the next request asks again.
    entry.result.catch(() => {
      if (cache.get(tokenHash) === entry) cache.delete(tokenHash)
    })
    return entry.result
  }
  return Object.assign(authenticate, { clear: () => cache.clear() })
}

/** Looks API tokens (`api_tokens`) up in PostgreSQL through {@link createCachedAuthenticator}. */
export function createTokenAuthenticator(db: Db, options: TokenAuthenticatorOptions): TokenAuthenticator {
  return createCachedAuthenticator(
    {
      // Anything that is not shaped like a token cannot be one: no query for junk.
      accepts: isApiTokenFormat,
      async lookup(tokenHash) {
        const row = await findActiveTokenByHash(db, tokenHash)
        return row && { tokenId: row.id, userId: row.user_id, admin: row.admin }
      },
    },
    options,
  )
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
  throw new Forbidden(`this token may not act for user ${JSON.stringify(userId)}`)
}

/** Throws 403 `forbidden` unless the principal is an admin token. */
export function assertAdmin(principal: Principal): void {
  if (!principal.admin) throw new Forbidden('this needs an admin token')
}

/** Options for {@link authPlugin}. */
export interface AuthPluginOptions {
  authenticate: Authenticate
}

function hasRequireAuth(route: RouteOptions): boolean {
  const hooks: unknown[] = [route.onRequest, route.preParsing, route.preValidation, route.preHandler].flat()
  return hooks.includes(requireAuth)
}

const auth: FastifyPluginAsync<AuthPluginOptions> = async (app, options) => {
  app.decorateRequest('principal', null)

  app.addHook('onRequest', async (request) => {
    const token = bearerToken(request)
    if (token === undefined) return
    let principal: Principal | undefined
    try {
      principal = await options.authenticate(token)
    } catch (err) {
      request.log.error({ err }, 'token lookup failed')
      throw new ServiceUnavailable('cannot check the bearer token now', 5, err)
    }
    request.principal = principal ?? null
  })

  // The swagger plugin reads route schemas when it builds the document, so a security
  // requirement added here (after swagger saw the route) still shows in /docs.
  app.addHook('onRoute', (route) => {
    if (!hasRequireAuth(route)) return
    route.schema = { ...route.schema, security: route.schema?.security ?? [{ [BEARER_SECURITY_SCHEME]: [] }] }
  })
}

/**
 * Sets `request.principal` from the bearer token before any route hook runs (the rate
 * limit keys on it), and documents the routes using {@link requireAuth} as needing a
 * bearer token in OpenAPI. A bad token is not an error here: public routes ignore it.
 */
export const authPlugin = fp(auth, { name: 'bourse-auth', fastify: '5.x' })
