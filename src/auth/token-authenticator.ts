/**
 * API tokens as bearer credentials: {@link createTokenAuthenticator} resolves a token
 * through `api_tokens` with a small in-process cache, for the HTTP platform's
 * `authenticate` option.
 */
import type { Db } from '../database.ts'
import type { Authenticate, Principal } from '../platform/http/auth.ts'
import { findActiveTokenByHash, hashApiToken, isApiTokenFormat } from './api-tokens.repository.ts'

/** Options for {@link createTokenAuthenticator}. */
export interface TokenAuthenticatorOptions {
  /** How long a lookup is trusted, in ms; 0 asks PostgreSQL every time. A revocation takes up to this long to apply. */
  cacheMs: number
  /** Most accepted tokens kept; the oldest go first. @defaultValue 10000 */
  maxEntries?: number
  /** How long a rejected token (unknown or revoked) is remembered, in ms. @defaultValue `cacheMs` */
  rejectedCacheMs?: number
  /**
   * Most rejected tokens kept, apart from the accepted ones so that made-up tokens only
   * push out other made-up tokens. @defaultValue 10000
   */
  maxRejectedEntries?: number
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

/** Puts `key` last in `map` (the newest), dropping the oldest entries beyond `max`. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  // Deleting before setting moves the entry to the end, so the first key is the oldest.
  map.delete(key)
  map.set(key, value)
  while (map.size > max) {
    const oldest = map.keys().next().value
    if (oldest === undefined) break
    map.delete(oldest)
  }
}

/**
 * An {@link Authenticate} keeping each answer for a while, so a busy client does not cost
 * a query per request: an accepted token for `cacheMs`, a rejected one for
 * `rejectedCacheMs`. The two are kept apart, each with its own bound, so a flood of
 * made-up tokens cannot push the real ones out (and make every real request a query).
 * Concurrent lookups of the same token share one query, and a failed lookup is not
 * remembered. A token that needs a query first passes `beforeLookup` (the HTTP platform
 * charges the caller's address there), so a caller refused by it causes no query. The
 * caches are keyed by the token's hash, so they hold no secrets beyond what the table holds.
 */
export function createCachedAuthenticator(source: TokenLookup, options: TokenAuthenticatorOptions): TokenAuthenticator {
  const { cacheMs } = options
  const rejectedCacheMs = options.rejectedCacheMs ?? cacheMs
  const maxEntries = options.maxEntries ?? 10_000
  const maxRejectedEntries = options.maxRejectedEntries ?? 10_000
  const now = options.now ?? Date.now
  const accepted = new Map<string, { expiresAt: number; principal: Principal }>()
  const rejected = new Map<string, number>()
  const pending = new Map<string, Promise<Principal | undefined>>()
  // Bumped by clear(), so a lookup that was in flight then is not remembered.
  let generation = 0

  /** The remembered answer: a principal, null for a rejected token, undefined when a query must tell. */
  const remembered = (tokenHash: string): Principal | null | undefined => {
    const at = now()
    const hit = accepted.get(tokenHash)
    if (hit && hit.expiresAt > at) return hit.principal
    const rejectedUntil = rejected.get(tokenHash)
    if (rejectedUntil !== undefined && rejectedUntil > at) return null
    return undefined
  }

  const lookup = (tokenHash: string): Promise<Principal | undefined> => {
    const inFlight = pending.get(tokenHash)
    if (inFlight) return inFlight
    // Trusted from when the query was sent: a revocation racing it still applies within cacheMs.
    const sentAt = now()
    const sentIn = generation
    const result = source.lookup(tokenHash).finally(() => {
      if (pending.get(tokenHash) === result) pending.delete(tokenHash)
    })
    pending.set(tokenHash, result)
    result.then(
      (principal) => {
        if (sentIn !== generation) return
        if (principal) {
          rejected.delete(tokenHash)
          if (cacheMs > 0) remember(accepted, tokenHash, { expiresAt: sentAt + cacheMs, principal }, maxEntries)
        } else {
          accepted.delete(tokenHash)
          if (rejectedCacheMs > 0) remember(rejected, tokenHash, sentAt + rejectedCacheMs, maxRejectedEntries)
        }
      },
      // A failed lookup is not remembered: the next request asks again (the caller sees the error).
      () => {},
    )
    return result
  }

  const authenticate: Authenticate = (token, options) => {
    if (!source.accepts(token)) return Promise.resolve(undefined)
    const tokenHash = hashApiToken(token)
    if (options?.fresh) return lookup(tokenHash)
    const known = remembered(tokenHash)
    if (known !== undefined) return Promise.resolve(known ?? undefined)
    const inFlight = pending.get(tokenHash)
    if (inFlight || !options?.beforeLookup) return inFlight ?? lookup(tokenHash)
    return options.beforeLookup().then(() => {
      // Another request may have asked, or had its answer, while this one waited.
      const answered = remembered(tokenHash)
      return answered !== undefined ? (answered ?? undefined) : lookup(tokenHash)
    })
  }
  return Object.assign(authenticate, {
    clear: () => {
      generation++
      accepted.clear()
      rejected.clear()
      pending.clear()
    },
  })
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
