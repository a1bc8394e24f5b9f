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
