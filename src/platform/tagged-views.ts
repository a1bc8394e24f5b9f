/**
 * Views (ready answers, as text) kept in the process's memory and served only while the
 * tag they were built at is still the current one in Redis. A write that changes what a
 * view shows raises its tag (a generation counter) in the same atomic step as the write;
 * every read asks Redis for the current tag first, so a read that starts after a write
 * never gets a view built before it. The tag reads of one event-loop turn go to Redis as
 * one script call, whatever views they are for, and the builds of one view at one tag are
 * shared by the reads waiting for it. Memory is bounded by the bytes of the texts kept;
 * the least recently served views go first.
 *
 * Tags must never repeat for different contents, also when Redis loses its data or comes
 * back from an older save: a counter that starts again below values it gave before would
 * make old views current again. The writer keeps its counter at or above the clock (see
 * `src/market/lua/history.lua`).
 */
import type { Redis } from './redis.ts'
import { createTurnLoader } from './turn-loader.ts'

/** Where a view's tag lives: a string key, or a field of a hash. */
export interface TagSource {
  key: string
  /** The hash field holding the tag; without it `key` is a string. */
  field?: string
}

/** A view as built: its text, and the tag of the data it was built from (null: do not keep it). */
export interface BuiltView {
  text: string
  tag: string | null
}

/** Options of {@link createTaggedViews}. */
export interface TaggedViewsOptions {
  /** Most bytes of view text kept (UTF-16 length x 2); 0 keeps none. @defaultValue 33554432 */
  maxBytes?: number
}

/** The views of one process. */
export interface TaggedViews {
  /**
   * The view `key`, current for the tag at `source`: the one kept when its tag is the
   * current one, otherwise `build(tag)`'s (kept under the tag it reports). `build` gets
   * the current tag, null when `source` holds none; it answers undefined when there is no
   * such view (nothing is kept then).
   */
  read(key: string, source: TagSource, build: (tag: string | null) => Promise<BuiltView | undefined>): Promise<string | undefined>
  /** Bytes of text kept now. */
  readonly bytes: number
}

/** KEYS the tag keys, ARGV[i] the hash field of KEYS[i] or '' for a string key; a tag or false each. */
const READ_TAGS = `
local out = {}
for i, key in ipairs(KEYS) do
  local tag
  if ARGV[i] == '' then tag = redis.call('GET', key) else tag = redis.call('HGET', key, ARGV[i]) end
  out[i] = tag or false
end
return out
`

type TagRedis = Redis & { bourseReadTags(...keysThenFields: Array<string | number>): Promise<Array<string | null>> }

interface Kept {
  tag: string
  text: string
}

const SEPARATOR = '\u0000'

/** Creates the views of a process on `redis` (the script is registered on it). */
export function createTaggedViews(redis: Redis, options: TaggedViewsOptions = {}): TaggedViews {
  const maxBytes = options.maxBytes ?? 32 * 1024 * 1024
  const r = redis as TagRedis
  if (typeof r.bourseReadTags !== 'function') redis.defineCommand('bourseReadTags', { lua: READ_TAGS })

  // A tag source as one loader key: the key, then the field ('' for a string key).
  const loadTag = createTurnLoader<string | null>(async (sources) => {
    const keys: string[] = []
    const fields: string[] = []
    for (const source of sources) {
      const at = source.indexOf(SEPARATOR)
      keys.push(source.slice(0, at))
      fields.push(source.slice(at + 1))
    }
    return r.bourseReadTags(keys.length, ...keys, ...fields)
  })

  // Insertion order is recency order: a view served is moved to the end.
  const kept = new Map<string, Kept>()
  const building = new Map<string, Promise<string | undefined>>()
  let bytes = 0

  const forget = (key: string) => {
    const old = kept.get(key)
    if (!old) return
    kept.delete(key)
    bytes -= old.text.length * 2
  }
  const keep = (key: string, tag: string, text: string) => {
    forget(key)
    const size = text.length * 2
    if (size > maxBytes) return
    kept.set(key, { tag, text })
    bytes += size
    for (const oldest of kept.keys()) {
      if (bytes <= maxBytes) break
      forget(oldest)
    }
  }

  return {
    async read(key, source, build) {
      const tag = await loadTag(`${source.key}${SEPARATOR}${source.field ?? ''}`)
      const view = kept.get(key)
      if (view !== undefined && tag !== null && view.tag === tag) {
        kept.delete(key)
        kept.set(key, view)
        return view.text
      }
      const shared = `${key}${SEPARATOR}${tag ?? ''}`
      const pending = building.get(shared)
      if (pending) return pending
      const made = build(tag).then((built) => {
        if (built === undefined) return undefined
        // Kept under the tag it was built at, which every read compares with the current
        // one (a slow build keeping an older view costs a build, never a stale answer); a
        // build without a tag is served but not kept.
        if (built.tag !== null) keep(key, built.tag, built.text)
        return built.text
      })
      building.set(shared, made)
      try {
        return await made
      } finally {
        building.delete(shared)
      }
    },
    get bytes() {
      return bytes
    },
  }
}
