/**
 * What the event query routes take and answer (TypeBox): the filters of
 * `GET /api/events`, `GET /api/sessions/{session_id}/events` and `GET /api/event-errors`,
 * and the stored events and errors as the API shows them.
 */
import Type, { type Static } from 'typebox'
import { EventErrorReason } from './db/tables.ts'
import { pageQueryFields } from '../platform/http/paging.ts'

const SESSION_EXAMPLE = 'e2085be5-9137-4e4e-80b5-f1ffddc25423'
const TIME_DESCRIPTION =
  'ISO 8601: `2021-01-01T09:15:27.243860Z`, with an offset (`+02:00`), `2021-01-01 09:15:27.243860` (UTC) ' +
  'or a date (`2021-01-01`, midnight UTC)'

const filterFields = {
  app: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 100,
      description: "An application's name or id. An application token may name only its own application.",
      examples: ['shop'],
    }),
  ),
  category: Type.Optional(Type.String({ minLength: 1, maxLength: 100, examples: ['page interaction'] })),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, examples: ['pageview'] })),
}
const range = (what: string) => ({
  from: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description: `Earliest ${what}, inclusive. ${TIME_DESCRIPTION}`,
      examples: ['2021-01-01T00:00:00Z'],
    }),
  ),
  to: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, description: `Latest ${what}, exclusive. ${TIME_DESCRIPTION}`, examples: ['2021-01-02'] }),
  ),
})

/** The query of `GET /api/events`. */
export const EventsQuery = Type.Object(
  {
    session_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, examples: [SESSION_EXAMPLE] })),
    ...filterFields,
    ...range('timestamp of the event'),
    ...pageQueryFields,
  },
  { additionalProperties: false },
)
export type EventsQuery = Static<typeof EventsQuery>

/** The query of `GET /api/sessions/{session_id}/events`. */
export const SessionEventsQuery = Type.Object(pageQueryFields, { additionalProperties: false })
export type SessionEventsQuery = Static<typeof SessionEventsQuery>

/** The path of `GET /api/sessions/{session_id}/events`. */
export const SessionParams = Type.Object({
  session_id: Type.String({ minLength: 1, maxLength: 128, examples: [SESSION_EXAMPLE] }),
})

/** The query of `GET /api/event-errors`. */
export const EventErrorsQuery = Type.Object(
  {
    session_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'Only the errors of this session', examples: [SESSION_EXAMPLE] }),
    ),
    ...filterFields, ...range('time the error was stored'), ...pageQueryFields },
  { additionalProperties: false },
)
export type EventErrorsQuery = Static<typeof EventErrorsQuery>

const Time = (description: string) => Type.String({ format: 'date-time', description })

/** A stored event. */
export const EventView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    app: Type.String({ description: 'The name of the application that sent it' }),
    session_id: Type.String(),
    category: Type.String(),
    name: Type.String(),
    data: Type.Record(Type.String(), Type.Unknown()),
    timestamp: Time('When it happened, in UTC with microseconds'),
    received_at: Time('When the intake accepted it'),
    stored_at: Time('When the worker stored it'),
    validated: Type.Boolean({ description: 'False when its type had no registered schema and it was stored as it came' }),
  },
  {
    examples: [
      {
        id: '3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11',
        app: 'shop',
        session_id: SESSION_EXAMPLE,
        category: 'page interaction',
        name: 'cta click',
        data: { host: 'www.consumeraffairs.com', path: '/', element: 'chat bubble' },
        timestamp: '2021-01-01T09:15:27.243860Z',
        received_at: '2021-01-01T09:15:27.301122Z',
        stored_at: '2021-01-01T09:15:27.355907Z',
        validated: true,
      },
    ],
  },
)
export type EventView = Static<typeof EventView>

/** A stored event error: the event as it came, and every reason it was refused. */
export const EventErrorView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    app: Type.String({ description: 'The name of the application that sent it' }),
    session_id: Type.Union([Type.String(), Type.Null()], { description: 'Null when the event had no usable one' }),
    category: Type.Union([Type.String(), Type.Null()]),
    name: Type.Union([Type.String(), Type.Null()]),
    raw: Type.Unknown({ description: 'The event exactly as the application sent it' }),
    reasons: Type.Array(EventErrorReason),
    received_at: Time('When the intake accepted it'),
    stored_at: Time('When the worker stored the error'),
  },
  {
    examples: [
      {
        id: '9b2d5a1e-0c44-4a7b-8f0e-5d6c7b8a9f00',
        app: 'shop',
        session_id: SESSION_EXAMPLE,
        category: 'page interaction',
        name: 'pageview',
        raw: {
          session_id: SESSION_EXAMPLE,
          category: 'page interaction',
          name: 'pageview',
          data: { path: '/' },
          timestamp: '2021-01-01 09:15:27.243860',
        },
        reasons: [{ field: '/data/host', message: 'is required' }],
        received_at: '2021-01-01T09:15:27.301122Z',
        stored_at: '2021-01-01T09:15:27.355907Z',
      },
    ],
  },
)
export type EventErrorView = Static<typeof EventErrorView>
