/**
 * Bearer-token authentication mechanics for every HTTP service. {@link authPlugin}
 * resolves the token of every request into `request.principal` (null without a valid
 * one) through the `authenticate` function the service passes in; routes that need a
 * caller add {@link requireAuth}, and check ownership with {@link assertActsFor}. What a
 * token is and where it is looked up belongs to the service (see `src/auth`).
 */
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from 'fastify'
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
