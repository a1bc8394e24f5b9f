/**
 * The Redis keys `user1`, `user2`, ... (`{"id": 1, "credit": 150000000}`, the seed's
 * contract) are a projection of the `users` table. Each write carries the row's version
 * and a script keeps the newest, so projections written out of order (two verifiers,
 * a replay after a crash, a rebuild racing a trade) never go back in time.
 */
import type { Db } from '../database.ts'
import type { UserRow } from './db/tables.ts'
import type { Redis } from '../platform/redis.ts'
import { QUARANTINE_LUA } from '../platform/redis-quarantine.ts'
import { decimalJson } from './money.ts'

// Returns { 0 } when a newer version is there, { 1 } when written, { 2, name } when written
// after moving a value that is not a user's contract JSON (another program's key) to
// bourse:quarantine:<key> (or :<key>:2, ...): such a value is never overwritten.
const PROJECT = `${QUARANTINE_LUA}
local current = tonumber(redis.call('HGET', 'bourse:projection:versions', KEYS[1]) or '0')
local v = tonumber(ARGV[2])
if v < current and ARGV[3] ~= '1' then return { 0 } end
local written = { 1 }
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' then
  local ours = false
  if kind == 'string' then
    local raw = redis.call('GET', KEYS[1])
    local ok, doc = pcall(cjson.decode, raw)
    ours = ok and type(doc) == 'table' and doc.credit ~= nil and string.match(raw, '^%s*{') ~= nil
  end
  if not ours then
    written = { 2, quarantine(KEYS[1]) }
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', 'bourse:projection:versions', KEYS[1], v)
return written
`

type ProjectingRedis = Redis & {
  bourseProjectUser(key: string, json: string, version: string, force: string): Promise<[number, string?]>
}

function scripted(redis: Redis): ProjectingRedis {
  const r = redis as ProjectingRedis
  if (!('bourseProjectUser' in r)) redis.defineCommand('bourseProjectUser', { numberOfKeys: 1, lua: PROJECT })
  return r
}

/**
 * Defines the projection's script on a connection before it sends anything. Required on
 * a connection with auto-pipelining: a pipeline that ioredis opened earlier in the same
 * turn of the event loop lacks a command defined after it, and the call fails.
 */
export function defineUserProjection(redis: Redis): void {
  scripted(redis)
}

/** The contract JSON of a user row; the credit exactly as PostgreSQL holds it. */
export function userContractJson(user: Pick<UserRow, 'id' | 'contract_id' | 'credit'>): string {
  return `{"id":${JSON.stringify(user.contract_id ?? user.id)},"credit":${decimalJson(user.credit)}}`
}

/** Options of {@link projectUser}. */
export interface ProjectUserOptions {
  /** Write even over a newer version (for a database restored to older versions). @defaultValue false */
  force?: boolean
  /**
   * Told when the key held a value that is not a user's contract JSON (another program's
   * key), moved to `movedTo` (`bourse:quarantine:<key>`, or `:<key>:2`, ... when taken)
   * rather than overwritten. @defaultValue none
   */
  onQuarantine?: (key: string, movedTo: string) => void
}

/**
 * Writes a user's projection unless a newer version is already there. True if written.
 */
export async function projectUser(
  redis: Redis,
  user: Pick<UserRow, 'id' | 'contract_id' | 'credit' | 'version'>,
  options: ProjectUserOptions = {},
): Promise<boolean> {
  const [written, movedTo] = await scripted(redis).bourseProjectUser(user.id, userContractJson(user), String(user.version), options.force ? '1' : '0')
  if (written === 2 && movedTo !== undefined) options.onQuarantine?.(user.id, movedTo)
  return written >= 1
}

/**
 * Rewrites every user's projection from PostgreSQL, keeping any newer one a concurrent
 * trade wrote meanwhile (unless `force`). Resolves to the number of users.
 */
export async function rebuildUserProjections(db: Db, redis: Redis, options: { force?: boolean; batch?: number } = {}): Promise<number> {
  const batch = options.batch ?? 1000
  let after = ''
  let count = 0
  for (;;) {
    const rows = await db
      .selectFrom('users')
      .select(['id', 'contract_id', 'credit', 'version'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(batch)
      .execute()
    if (rows.length === 0) return count
    await Promise.all(rows.map((row) => projectUser(redis, row, { force: options.force ?? false })))
    count += rows.length
    after = rows[rows.length - 1]!.id
  }
}
