/**
 * The event type registry over HTTP, for operators: the JSON Schema each type's `data`
 * must satisfy. Admin tokens only. Category and name are path segments, URL-encoded
 * (`/api/event-types/page%20interaction/cta%20click`).
 */
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { assertAdmin, principalOf, requireAuth } from '../platform/http/auth.ts'
import type { Db } from '../database.ts'
import type { EventTypeRow } from './db/tables.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import { BadRequest, ErrorResponseSchema, NotFound } from '../platform/http/errors.ts'
import { quote } from '../platform/quote.ts'
import {
  deleteEventType,
  findEventType,
  listEventTypes,
  MAX_EVENT_TYPE_PART,
  upsertEventType,
} from './event-types.repository.ts'
import { InvalidEventTypeError } from './event-validation.ts'

/** What {@link eventTypeRoutes} needs. */
export interface EventTypeRoutesDeps {
  db: Db
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

const JsonSchema = Type.Record(Type.String(), Type.Unknown(), {
  description: 'A JSON Schema (draft-07), checked in Ajv strict mode: unknown keywords or formats are refused',
  examples: [{ type: 'object', required: ['host', 'path'], properties: { host: { type: 'string' }, path: { type: 'string' } } }],
})

/** A registered event type. */
export const EventTypeView = Type.Object({
  category: Type.String(),
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  schema: JsonSchema,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
})

const TypeParams = Type.Object({
  category: Type.String({ minLength: 1, maxLength: MAX_EVENT_TYPE_PART, examples: ['page interaction'] }),
  name: Type.String({ minLength: 1, maxLength: MAX_EVENT_TYPE_PART, examples: ['cta click'] }),
})

const PutBody = Type.Object(
  {
    schema: JsonSchema,
    description: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Null()], { description: 'A note for people; absent or null: none' })),
  },
  { additionalProperties: false },
)

function view(row: EventTypeRow) {
  return {
    category: row.category,
    name: row.name,
    description: row.description,
    schema: row.schema,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

/** Refuses every token but an admin's (403), before the body is even validated. */
async function requireAdmin(request: FastifyRequest): Promise<void> {
  assertAdmin(principalOf(request))
}

const label = (p: { category: string; name: string }) => `${quote(p.category)} / ${quote(p.name)}`

/** `GET`, `PUT` and `DELETE` on `/api/event-types`: the admin API of the registry. */
export function eventTypeRoutes(deps: EventTypeRoutesDeps): RoutePlugin {
  const { db } = deps
  const onRequest = [requireAuth, requireAdmin]
  return async (app) => {
    app.get(
      '/api/event-types',
      {
        onRequest,
        schema: {
          operationId: 'listEventTypes',
          tags: ['event types'],
          summary: 'Every registered event type with its JSON Schema',
          response: { 200: Type.Object({ items: Type.Array(EventTypeView) }), ...errors(401, 403, 429) },
        },
      },
      async () => ({ items: (await listEventTypes(db)).map(view) }),
    )

    app.get(
      '/api/event-types/:category/:name',
      {
        onRequest,
        schema: {
          operationId: 'getEventType',
          tags: ['event types'],
          summary: 'One event type',
          params: TypeParams,
          response: { 200: EventTypeView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const { category, name } = request.params
        const row = await findEventType(db, category, name)
        if (!row) throw new NotFound(`no event type ${label(request.params)}`)
        return view(row)
      },
    )

    app.put(
      '/api/event-types/:category/:name',
      {
        onRequest,
        schema: {
          operationId: 'putEventType',
          tags: ['event types'],
          summary: 'Register an event type, or replace its schema and description',
          description:
            'The schema is checked in Ajv strict mode; one that is not valid JSON Schema, or that strict mode refuses ' +
            '(an unknown keyword or format, a `required` property it never defines), is answered 400 naming the problem. ' +
            'Running workers validate with the new schema within a few seconds; events already stored are not revisited.',
          params: TypeParams,
          body: PutBody,
          response: { 200: EventTypeView, 201: EventTypeView, ...errors(400, 401, 403, 429) },
        },
      },
      async (request, reply) => {
        const { category, name } = request.params
        try {
          const { type, created } = await upsertEventType(db, {
            category,
            name,
            schema: request.body.schema,
            // PUT replaces the resource: no description means none.
            description: request.body.description ?? null,
          })
          reply.code(created ? 201 : 200)
          return view(type)
        } catch (err) {
          if (!(err instanceof InvalidEventTypeError)) throw err
          const field = err.field === 'schema' ? 'body.schema' : `params.${err.field}`
          throw new BadRequest(err.message, [{ field, message: err.message }], err.field === 'schema' ? 'invalid_schema' : 'validation_failed')
        }
      },
    )

    app.delete(
      '/api/event-types/:category/:name',
      {
        onRequest,
        schema: {
          operationId: 'deleteEventType',
          tags: ['event types'],
          summary: 'Remove an event type (its stored events stay)',
          description: 'Afterwards its events are stored unvalidated or rejected, as EVENTS_UNKNOWN_TYPE says.',
          params: TypeParams,
          response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        const { category, name } = request.params
        if (!(await deleteEventType(db, category, name))) throw new NotFound(`no event type ${label(request.params)}`)
        return reply.code(204).send(null)
      },
    )
  }
}
