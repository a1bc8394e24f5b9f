/**
 * Reading what The Eye collected: events (newest first, or one session in order) and
 * event errors with their reasons, a keyset page at a time, plus the operators' page at
 * `/admin/events` that browses them.
 *
 * Who sees what: an application token sees only its own application's events and
 * errors, an admin token sees everything, a user token nothing (403).
 */
import type { FastifyRequest } from 'fastify'
import { type Principal, principalOf, requireAuth } from '../platform/http/auth.ts'
import type { Db } from '../database.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import type { Page, PageRequest } from '../platform/db/keyset.ts'
import { BadRequest, ErrorResponseSchema, Forbidden } from '../platform/http/errors.ts'
import { pageRequest, PageSchema } from '../platform/http/paging.ts'
import { eventsAdminPageRoutes } from './events.admin.routes.ts'
import { parseEventTimestamp } from './event-validation.ts'
import {
  EventErrorsQuery,
  EventErrorView,
  EventsQuery,
  EventView,
  SessionEventsQuery,
  SessionParams,
} from './events.query.schemas.ts'
import {
  appNamesById,
  findAppByIdOrName,
  listEventErrors,
  listEvents,
  listSessionEvents,
  type EventFilter,
  type StoredEvent,
  type StoredEventError,
} from './events.repository.ts'

/** What {@link eventQueryRoutes} needs. */
export interface EventQueryDeps {
  db: Db
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

/** Which application's rows a request may read: one (`appId`), all (undefined), or none (an unknown `app`). */
type AppScope = { appId: string | undefined } | 'none'

/**
 * The application scope of a request. An application token is held to its own
 * application; naming another one (or one that does not exist: no probing for names)
 * is 403. An admin token reads all, or the application named. A user token reads none.
 */
async function appScope(db: Db, principal: Principal, app: string | undefined): Promise<AppScope> {
  if (principal.appId !== undefined) {
    if (app !== undefined) {
      const named = await findAppByIdOrName(db, app)
      if (named?.id !== principal.appId) {
        throw new Forbidden("an application token may read only its own application's events", { field: 'querystring.app' })
      }
    }
    return { appId: principal.appId }
  }
  if (!principal.admin) throw new Forbidden('reading events needs an admin token or an application token')
  if (app === undefined) return { appId: undefined }
  const named = await findAppByIdOrName(db, app)
  return named ? { appId: named.id } : 'none'
}

/**
 * A `from` or `to` as text PostgreSQL reads exactly: the forms of an event timestamp
 * (see `parseEventTimestamp`), or a bare date meaning its midnight UTC. 400 naming the
 * field otherwise.
 */
function queryTime(value: string | undefined, field: string): string | undefined {
  if (value === undefined) return undefined
  const parsed = parseEventTimestamp(/^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value} 00:00:00` : value)
  if (!parsed.ok) throw new BadRequest(`invalid request: ${field}`, [{ field, message: parsed.message }], 'validation_failed')
  return parsed.text
}

/** The time range of a query, checked. */
function timeRange(query: { from?: string | undefined; to?: string | undefined }) {
  const from = queryTime(query.from, 'querystring.from')
  const to = queryTime(query.to, 'querystring.to')
  // The texts are UTC ISO 8601 of one length, so they compare as the instants do.
  if (from !== undefined && to !== undefined && to < from) {
    throw new BadRequest('invalid request: querystring.to', [{ field: 'querystring.to', message: 'is before from' }], 'validation_failed')
  }
  return { from, to }
}

/** The fields an event and an event error share, the application by its name. */
function sourceView<R extends StoredEvent | StoredEventError>(
  row: R,
  names: Map<string, string>,
): Pick<R, 'id' | 'session_id' | 'category' | 'name'> & { app: string } {
  return {
    id: row.id,
    app: names.get(row.app_id) ?? row.app_id,
    session_id: row.session_id,
    category: row.category,
    name: row.name,
  }
}

function eventView(row: StoredEvent, names: Map<string, string>): EventView {
  return {
    ...sourceView(row, names),
    data: row.data as Record<string, unknown>,
    timestamp: row.occurred_at,
    received_at: row.received_at,
    stored_at: row.stored_at,
    validated: row.validated,
  }
}

function eventErrorView(row: StoredEventError, names: Map<string, string>): EventErrorView {
  return {
    ...sourceView(row, names),
    raw: row.raw,
    reasons: row.reasons,
    received_at: row.received_at,
    stored_at: row.stored_at,
  }
}

/** The answer for a page: rows as views, with their applications' names. */
async function pageView<R extends { app_id: string }, V>(
  db: Db,
  page: Page<R>,
  view: (row: R, names: Map<string, string>) => V,
): Promise<Page<V>> {
  const names = await appNamesById(db, page.items.map((row) => row.app_id))
  return { items: page.items.map((row) => view(row, names)), next_cursor: page.next_cursor }
}

const emptyPage = { items: [], next_cursor: null }

/** The query routes and the admin page, as a plugin to register under the API. */
export function eventQueryRoutes(deps: EventQueryDeps): RoutePlugin {
  const { db } = deps
  const scopeOf = (request: FastifyRequest, app: string | undefined) => appScope(db, principalOf(request), app)
  /**
   * One page of a filtered listing (`/api/events`, `/api/event-errors`): the time range
   * checked, the filters held to what the caller may read, the applications named.
   */
  const filteredPage = async <R extends { app_id: string }, V>(
    request: FastifyRequest,
    query: EventsQuery | EventErrorsQuery,
    list: (db: Db, filter: EventFilter, page: PageRequest) => Promise<Page<R>>,
    view: (row: R, names: Map<string, string>) => V,
  ): Promise<Page<V>> => {
    const range = timeRange(query)
    const scope = await scopeOf(request, query.app)
    if (scope === 'none') return emptyPage
    const filter = { ...scope, sessionId: query.session_id, category: query.category, name: query.name, ...range }
    return pageView(db, await list(db, filter, pageRequest(query)), view)
  }

  return async (app) => {
    app.get(
      '/api/events',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listEvents',
          tags: ['events'],
          summary: 'Stored events, newest first, a keyset page at a time',
          description:
            'Filters combine (all must match). `from` (inclusive) and `to` (exclusive) bound the event timestamp. ' +
            "An application token sees only its own application's events; an admin token sees all; a user token is refused.",
          querystring: EventsQuery,
          response: { 200: PageSchema(EventView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => filteredPage(request, request.query, listEvents, eventView),
    )

    app.get(
      '/api/sessions/:session_id/events',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listSessionEvents',
          tags: ['events'],
          summary: "One session's events in the order they happened (timestamp ascending)",
          description: "An application token sees only its own application's events of the session.",
          params: SessionParams,
          querystring: SessionEventsQuery,
          response: { 200: PageSchema(EventView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => {
        const scope = await scopeOf(request, undefined)
        if (scope === 'none') return emptyPage
        const page = await listSessionEvents(db, request.params.session_id, scope, pageRequest(request.query))
        return pageView(db, page, eventView)
      },
    )

    app.get(
      '/api/event-errors',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listEventErrors',
          tags: ['events'],
          summary: 'Events the worker refused, with every reason, newest first',
          description:
            'Filters combine (all must match); `session_id` gives the errors of one session. ' +
            '`from` (inclusive) and `to` (exclusive) bound the time the error was stored. ' +
            "An application token sees only its own application's errors; an admin token sees all.",
          querystring: EventErrorsQuery,
          response: { 200: PageSchema(EventErrorView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => filteredPage(request, request.query, listEventErrors, eventErrorView),
    )

    await app.register(eventsAdminPageRoutes())
  }
}
