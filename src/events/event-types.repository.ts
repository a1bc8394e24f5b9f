/**
 * The event type registry in PostgreSQL (`event_types`): for each category + name, the
 * JSON Schema its `data` must satisfy. Schemas are checked strictly before they are
 * stored; the worker reads them through {@link createEventTypeCache}.
 */
import { sql } from 'kysely'
import type { Db } from '../database.ts'
import type { EventTypeRow } from './db/tables.ts'
import {
  assertValidEventSchema,
  createEventTypeRegistry,
  type EventTypeRegistry,
  InvalidEventTypeError,
} from './event-validation.ts'

/** Longest category or name, as the intake accepts them. */
export const MAX_EVENT_TYPE_PART = 100

/** What {@link upsertEventType} stores. */
export interface EventTypeInput {
  category: string
  name: string
  /** A JSON Schema (draft-07) object. */
  schema: unknown
  /** A note for people. Undefined keeps the stored one (null on a new type); null clears it. */
  description?: string | null
}

function assertTypePart(field: 'category' | 'name', value: string): void {
  if (value.length === 0 || value.length > MAX_EVENT_TYPE_PART) {
    throw new InvalidEventTypeError(field, `the ${field} must be 1 to ${MAX_EVENT_TYPE_PART} characters`)
  }
}

/** Every registered type, by category then name. */
export function listEventTypes(db: Db): Promise<EventTypeRow[]> {
  return db.selectFrom('event_types').selectAll().orderBy('category').orderBy('name').execute()
}

/** One type, or undefined. */
export function findEventType(db: Db, category: string, name: string): Promise<EventTypeRow | undefined> {
  return db.selectFrom('event_types').selectAll().where('category', '=', category).where('name', '=', name).executeTakeFirst()
}

/**
 * Registers a type or replaces its schema. Throws {@link InvalidEventTypeError} for a
 * schema that is not valid strict JSON Schema, or an empty or overlong category or name.
 * Running workers pick the change up within their refresh interval.
 */
export async function upsertEventType(db: Db, input: EventTypeInput): Promise<{ type: EventTypeRow; created: boolean }> {
  assertTypePart('category', input.category)
  assertTypePart('name', input.name)
  assertValidEventSchema(input.schema)
  const { description } = input
  const row = await db
    .insertInto('event_types')
    .values({ category: input.category, name: input.name, schema: JSON.stringify(input.schema), description: description ?? null })
    .onConflict((oc) =>
      oc.columns(['category', 'name']).doUpdateSet((eb) => ({
        schema: eb.ref('excluded.schema'),
        description: description === undefined ? eb.ref('event_types.description') : description,
        updated_at: sql<Date>`now()`,
      })),
    )
    .returningAll()
    // xmax is 0 only in a row version that no update produced: the insert took place.
    .returning(sql<boolean>`xmax = 0`.as('created'))
    .executeTakeFirstOrThrow()
  const { created, ...type } = row
  return { type, created }
}

/** Removes a type; true when it existed. Events of it already stored stay. */
export async function deleteEventType(db: Db, category: string, name: string): Promise<boolean> {
  const result = await db.deleteFrom('event_types').where('category', '=', category).where('name', '=', name).executeTakeFirst()
  return result.numDeletedRows > 0n
}

/** The registry as the worker sees it: loaded from PostgreSQL and refreshed periodically. */
export interface EventTypeCache {
  /** The registry, reloaded first when it is older than the refresh interval. Rejects when PostgreSQL does. */
  get(): Promise<EventTypeRegistry>
  /** Reloads now. */
  refresh(): Promise<EventTypeRegistry>
}

/** Options of {@link createEventTypeCache}. */
export interface EventTypeCacheOptions {
  /** How old the registry may get before it is reloaded, in ms: how long a change takes to reach the worker. @defaultValue 5000 */
  refreshMs?: number
}

/**
 * Caches the compiled registry. A reload reads the whole table (a handful of rows) and
 * compiles only schemas that changed, so it costs one small query every `refreshMs`.
 */
export function createEventTypeCache(db: Db, options: EventTypeCacheOptions = {}): EventTypeCache {
  const refreshMs = options.refreshMs ?? 5000
  let registry: EventTypeRegistry | undefined
  let loadedAt = 0
  let loading: Promise<EventTypeRegistry> | undefined
  const refresh = () => {
    loading ??= (async () => {
      try {
        const started = Date.now()
        const rows = await db.selectFrom('event_types').select(['category', 'name', 'schema']).execute()
        registry = createEventTypeRegistry(rows, registry)
        loadedAt = started
        return registry
      } finally {
        loading = undefined
      }
    })()
    return loading
  }
  return {
    refresh,
    async get() {
      if (registry && Date.now() - loadedAt < refreshMs) return registry
      return refresh()
    },
  }
}
