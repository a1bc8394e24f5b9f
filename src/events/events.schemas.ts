/**
 * The Eye's event shapes (TypeBox). The intake checks only syntax with
 * {@link IncomingEvent}; the worker validates `data` per event type and the timestamp.
 */
import Type, { type Static } from 'typebox'

/** One event as an application sends it. */
export const IncomingEvent = Type.Object(
  {
    // The pattern too: format 'uuid' alone also accepts `urn:uuid:...`, which neither the
    // message contract nor PostgreSQL's uuid type takes.
    id: Type.Optional(
      Type.String({
        format: 'uuid',
        pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
        description: 'Your id for the event: the same id sent twice is stored once',
      }),
    ),
    session_id: Type.String({ minLength: 1, maxLength: 128, description: "The user's session (events in a session are ordered by timestamp)" }),
    category: Type.String({ minLength: 1, maxLength: 100, examples: ['page interaction'] }),
    name: Type.String({ minLength: 1, maxLength: 100, examples: ['pageview'] }),
    data: Type.Record(Type.String(), Type.Unknown(), { description: 'Validated against the JSON Schema registered for (category, name)' }),
    timestamp: Type.String({
      minLength: 1,
      maxLength: 64,
      description: 'When it happened: `2021-01-01 09:15:27.243860` (UTC) or ISO 8601',
      examples: ['2021-01-01 09:15:27.243860'],
    }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        session_id: 'e2085be5-9137-4e4e-80b5-f1ffddc25423',
        category: 'page interaction',
        name: 'pageview',
        data: { host: 'www.consumeraffairs.com', path: '/' },
        timestamp: '2021-01-01 09:15:27.243860',
      },
    ],
  },
)
export type IncomingEvent = Static<typeof IncomingEvent>

/** Most events in one request. */
export const MAX_EVENTS_PER_REQUEST = 500
/** Largest event, as JSON text, in bytes. */
export const MAX_EVENT_BYTES = 32 * 1024

/** The body of `POST /api/events`: one event or an array of them. */
export const IncomingEvents = Type.Union([IncomingEvent, Type.Array(IncomingEvent, { minItems: 1, maxItems: MAX_EVENTS_PER_REQUEST })])
