/**
 * Applications trusted to send events (`apps`), each with its own bearer token. As with
 * API tokens, a token is shown once, when the application is created, and only its
 * SHA-256 is stored (256 random bits need no slow hash; see `src/auth`).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { createCachedAuthenticator, hashApiToken, type TokenAuthenticator } from '../auth/index.ts'
import type { Db } from '../database.ts'
import type { AppRow } from './db/tables.ts'
import { BadRequest, Conflict } from '../platform/http/errors.ts'
import { quote } from '../platform/quote.ts'

/** Every application token starts with this; user tokens (`bourse_` + 43) never have its length. */
export const APP_TOKEN_PREFIX = 'bourse_app_'

/** `bourse_app_` + base64url of 32 bytes (43 characters). */
const tokenPattern = /^bourse_app_[A-Za-z0-9_-]{43}$/
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Longest application name. */
export const MAX_APP_NAME_LENGTH = 100

/** An application as listed: everything but its token's hash. */
export type AppSummary = Omit<AppRow, 'token_hash'>

/** An application just created; `token` is the secret and is not stored anywhere. */
export interface CreatedApp {
  id: string
  name: string
  token: string
}

/** A new random application token: `bourse_app_` + base64url(32 random bytes). */
export function generateAppToken(): string {
  return APP_TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

/** True when `value` has the form of an application token (checked before any database lookup). */
export function isAppTokenFormat(value: string): boolean {
  return tokenPattern.test(value)
}

/**
 * Why a name cannot name an application, or undefined when it can. A name looking like
 * a UUID is refused so that `revokeApp(db, idOrName)` is never ambiguous.
 */
export function appNameProblem(name: string): string | undefined {
  if (name.trim() === '' || name !== name.trim()) return 'must be non-empty, without spaces around it'
  if (name.length > MAX_APP_NAME_LENGTH) return `must be at most ${MAX_APP_NAME_LENGTH} characters`
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'must not contain control characters'
  if (uuidPattern.test(name)) return 'must not look like an id (a UUID)'
  return undefined
}

/**
 * Registers an application and returns its token (only this once). Throws
 * {@link BadRequest} for an unusable name and {@link Conflict} when the name is taken.
 */
export async function createApp(db: Db, name: string): Promise<CreatedApp> {
  const problem = appNameProblem(name)
  if (problem !== undefined) throw new BadRequest(`application name ${problem}`, { field: 'name' })
  const token = generateAppToken()
  const id = randomUUID()
  try {
    await db.insertInto('apps').values({ id, name, token_hash: hashApiToken(token) }).execute()
  } catch (err) {
    // The unique index decides, so two concurrent creations cannot both win.
    const e = err as { code?: unknown; constraint?: unknown }
    if (e.code === '23505' && e.constraint === 'apps_name_key') {
      throw new Conflict(`an application named ${quote(name)} already exists`, { name }, 'app_exists')
    }
    throw err
  }
  return { id, name, token }
}

/** The active application whose token has this hash; undefined when unknown or revoked. */
export async function findActiveAppByHash(db: Db, tokenHash: string): Promise<AppSummary | undefined> {
  return db
    .selectFrom('apps')
    .select(['id', 'name', 'created_at', 'revoked_at'])
    .where('token_hash', '=', tokenHash)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
}

/** Every application, oldest first, revoked ones included; never their hashes. */
export async function listApps(db: Db): Promise<AppSummary[]> {
  return db.selectFrom('apps').select(['id', 'name', 'created_at', 'revoked_at']).orderBy('created_at').orderBy('id').execute()
}

/** What {@link revokeApp} did, and to which application. */
export type RevokeAppResult = { status: 'revoked' | 'already_revoked'; app: AppSummary } | { status: 'not_found' }

/**
 * Revokes an application's token, naming the application by id or by name; revoking
 * it again changes nothing (the first revocation time stays).
 */
export async function revokeApp(db: Db, idOrName: string): Promise<RevokeAppResult> {
  // Names never look like UUIDs (see appNameProblem), so a UUID is an id; anything else
  // is a name (and comparing it to the uuid column would only fail on the cast).
  const column = uuidPattern.test(idOrName) ? 'id' : 'name'
  const revoked = await db
    .updateTable('apps')
    .set({ revoked_at: sql<Date>`now()` })
    .where(column, '=', idOrName)
    .where('revoked_at', 'is', null)
    .returning(['id', 'name', 'created_at', 'revoked_at'])
    .executeTakeFirst()
  if (revoked) return { status: 'revoked', app: revoked }
  const existing = await db
    .selectFrom('apps')
    .select(['id', 'name', 'created_at', 'revoked_at'])
    .where(column, '=', idOrName)
    .executeTakeFirst()
  return existing ? { status: 'already_revoked', app: existing } : { status: 'not_found' }
}

/** Options for {@link createAppAuthenticator}. */
export interface AppAuthenticatorOptions {
  /** How long a lookup is trusted, in ms; 0 asks PostgreSQL every time. A revocation takes up to this long to apply. */
  cacheMs: number
  /** Most lookups kept; the oldest go first. @defaultValue 10000 */
  maxEntries?: number
  /** The clock, in ms. @defaultValue Date.now */
  now?: () => number
}

/**
 * An {@link Authenticate} for application tokens: the principal of an active
 * application is `{ tokenId: app.id, userId: null, admin: false, appId: app.id }`; any
 * other token (a user's, a revoked or made-up one) is undefined. Cached exactly like
 * `createTokenAuthenticator`: answers (found or not) are kept `cacheMs` by the token's
 * hash, concurrent lookups of one token share a query, and a failed lookup is forgotten.
 */
export function createAppAuthenticator(db: Db, options: AppAuthenticatorOptions): TokenAuthenticator {
  return createCachedAuthenticator(
    {
      // Only the shape of an application token can be one: no query for user tokens or junk.
      accepts: isAppTokenFormat,
      async lookup(tokenHash) {
        const app = await findActiveAppByHash(db, tokenHash)
        return app && { tokenId: app.id, userId: null, admin: false, appId: app.id }
      },
    },
    options,
  )
}
