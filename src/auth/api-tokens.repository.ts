/**
 * API tokens in PostgreSQL (`api_tokens`). A token is shown once, when it is created;
 * only its SHA-256 is stored.
 *
 * A fast hash is enough here: a token is 256 random bits, so there is nothing to guess
 * and no dictionary to try, unlike a password. A slow hash (bcrypt, scrypt) would only
 * add milliseconds of CPU to every request, and a stolen table still reveals no token.
 */
import { hash, randomBytes, randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { ApiTokenRow } from './db/tables.ts'
import { NotFound } from '../platform/http/errors.ts'
import { quote } from '../platform/quote.ts'

/** Every token starts with this, so a leaked one is easy to recognise (and to scan for). */
export const API_TOKEN_PREFIX = 'bourse_'

/** `bourse_` + base64url of 32 bytes (43 characters). */
const tokenPattern = /^bourse_[A-Za-z0-9_-]{43}$/
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Who a token acts for: one user, or everyone (admin). */
export type ApiTokenOwner = { userId: string } | { admin: true }

/** A token as listed: everything but its hash. */
export type ApiTokenSummary = Omit<ApiTokenRow, 'token_hash'>

/** A token just created; `token` is the secret and is not stored anywhere. */
export interface CreatedApiToken {
  id: string
  token: string
}

/** A new random token: `bourse_` + base64url(32 random bytes). */
export function generateApiToken(): string {
  return API_TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

/** True when `value` has the form of a token (checked before any database lookup). */
export function isApiTokenFormat(value: string): boolean {
  return tokenPattern.test(value)
}

/** The stored form of a token: SHA-256, hex. */
export function hashApiToken(token: string): string {
  // The one-shot hash: no Hash object per request (this runs on every authenticated call).
  return hash('sha256', token, 'hex')
}

/**
 * Creates a token for a user or an admin token, and returns the secret (only this once).
 * Throws {@link NotFound} when the user does not exist.
 */
export async function createApiToken(db: Db, owner: ApiTokenOwner, label?: string): Promise<CreatedApiToken> {
  const token = generateApiToken()
  const id = randomUUID()
  const userId = 'userId' in owner ? owner.userId : null
  try {
    await db
      .insertInto('api_tokens')
      .values({ id, token_hash: hashApiToken(token), user_id: userId, admin: userId === null, label: label ?? null })
      .execute()
  } catch (err) {
    // The foreign key decides, so a user deleted concurrently cannot get a token either.
    if ((err as { code?: unknown }).code === '23503') {
      throw new NotFound(`user ${quote(userId)} does not exist`, { user: userId })
    }
    throw err
  }
  return { id, token }
}

/** The token with this hash, unless it is revoked or unknown. */
export async function findActiveTokenByHash(db: Db, tokenHash: string): Promise<ApiTokenSummary | undefined> {
  return db
    .selectFrom('api_tokens')
    .select(['id', 'user_id', 'admin', 'label', 'created_at', 'revoked_at'])
    .where('token_hash', '=', tokenHash)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
}

/** Options for {@link listApiTokens}. */
export interface ListApiTokensOptions {
  /** Only the tokens of this user. @defaultValue every token, admin ones included */
  userId?: string
}

/** Tokens, oldest first, revoked ones included; never their hashes. */
export async function listApiTokens(db: Db, options: ListApiTokensOptions = {}): Promise<ApiTokenSummary[]> {
  let query = db.selectFrom('api_tokens').select(['id', 'user_id', 'admin', 'label', 'created_at', 'revoked_at'])
  if (options.userId !== undefined) query = query.where('user_id', '=', options.userId)
  return query.orderBy('created_at').orderBy('id').execute()
}

/** What {@link revokeApiToken} did. */
export type RevokeResult = 'revoked' | 'already_revoked' | 'not_found'

/** Revokes a token; revoking it again changes nothing (the first revocation time stays). */
export async function revokeApiToken(db: Db, id: string): Promise<RevokeResult> {
  // Not a UUID cannot be a token id; asking PostgreSQL would only fail on the cast.
  if (!uuidPattern.test(id)) return 'not_found'
  const revoked = await db
    .updateTable('api_tokens')
    .set({ revoked_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .returning('id')
    .executeTakeFirst()
  if (revoked) return 'revoked'
  const exists = await db.selectFrom('api_tokens').select('id').where('id', '=', id).executeTakeFirst()
  return exists ? 'already_revoked' : 'not_found'
}
