/** The operations API's TypeBox schemas: reports and the status of the services. */
import Type, { type Static } from 'typebox'
import { pageQueryFields } from '../platform/http/paging.ts'

/** Longest service name of a report. */
export const MAX_SERVICE_LENGTH = 64
/** Longest instance id of a report. */
export const MAX_INSTANCE_LENGTH = 200
/** Longest status of a report. */
export const MAX_STATUS_LENGTH = 200
/** Largest `data` of a report, in bytes of its JSON. */
export const MAX_DATA_BYTES = 8192
/** A report's service name: a letter or digit, then letters, digits, `.`, `_`, `:` or `-`. */
export const SERVICE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]*$'

const Level = Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('error')], { description: 'How serious it is' })
const Service = Type.String({
  minLength: 1,
  maxLength: MAX_SERVICE_LENGTH,
  pattern: SERVICE_PATTERN,
  description: 'The service it is about (a Bourse service files under its command name)',
})
const Instant = (description: string) => Type.String({ format: 'date-time', description })
const Data = Type.Record(Type.String(), Type.Unknown(), {
  maxProperties: 100,
  description: `Specifics, a JSON object of at most 100 fields and ${MAX_DATA_BYTES} bytes`,
})

/** The body of `POST /api/reports`. */
export const CreateReportBody = Type.Object(
  {
    level: Level,
    service: Service,
    status: Type.String({ minLength: 1, maxLength: MAX_STATUS_LENGTH, description: 'What happened, short: `started`, `disk almost full`' }),
    instance: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_INSTANCE_LENGTH, description: 'Which instance of the service' })),
    data: Type.Optional(Data),
  },
  {
    additionalProperties: false,
    examples: [{ level: 'warning', service: 'backup', status: 'slow', instance: 'db-1', data: { took_s: 5400, usual_s: 1200 } }],
  },
)
export type CreateReportBody = Static<typeof CreateReportBody>

/** A stored report. */
export const ReportView = Type.Object(
  {
    id: Type.String({ pattern: '^[0-9]+$', description: '64-bit integer, as a decimal string' }),
    level: Level,
    service: Type.String(),
    instance: Type.Union([Type.String(), Type.Null()]),
    status: Type.String(),
    data: Type.Record(Type.String(), Type.Unknown()),
    reported_at: Instant('When it happened (a service\'s own clock for its reports)'),
    received_at: Instant('When it was stored'),
    filed_by: Type.Union([Type.String(), Type.Null()], {
      description: 'The API token that filed it (`reports-token` for `REPORTS_TOKEN`); null for a Bourse service\'s own report',
    }),
  },
  {
    examples: [
      {
        id: '42',
        level: 'error',
        service: 'price-updater',
        instance: 'host-1234',
        status: 'dependency_lost',
        data: { dependency: 'redis', error: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:6379' },
        reported_at: '2026-12-07T03:00:00.000Z',
        received_at: '2026-12-07T03:00:01.021Z',
        filed_by: null,
      },
    ],
  },
)
export type ReportView = Static<typeof ReportView>

/** The query of `GET /api/reports`. */
export const ReportsQuery = Type.Object(
  {
    level: Type.Optional(Level),
    service: Type.Optional(Service),
    since: Type.Optional(Instant('Only reports from this instant on (inclusive)')),
    until: Type.Optional(Instant('Only reports before this instant (exclusive)')),
    ...pageQueryFields,
  },
  { additionalProperties: false },
)
export type ReportsQuery = Static<typeof ReportsQuery>

/** The query of `GET /api/status`. */
export const StatusQuery = Type.Object(
  { reports: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, default: 20, description: 'How many of the newest reports to include' })) },
  { additionalProperties: false },
)
export type StatusQuery = Static<typeof StatusQuery>

const InstanceView = Type.Object({
  service: Type.String(),
  instance: Type.String(),
  pid: Type.Integer(),
  host: Type.String(),
  version: Type.String(),
  started_at: Instant('When the instance started'),
  last_beat: Instant('When it last wrote its heartbeat'),
  ttl_ms: Type.Integer({ description: 'The heartbeat expires this long after the last beat' }),
  status: Type.Record(Type.String(), Type.Unknown(), {
    description: "The service's own status: its totals, `kafka` reachability, and for a consumer its `group` and `lag` by topic",
  }),
})

const GroupLagView = Type.Object({
  group: Type.String(),
  service: Type.String({ description: 'The service consuming as the group' }),
  instances: Type.Integer({ description: 'Its live instances' }),
  unknown: Type.Integer({ description: 'Instances whose heartbeat carries no lag (no partitions yet, or Kafka unreachable)' }),
  lag: Type.Record(Type.String(), Type.Integer(), { description: 'Messages not yet committed, by topic' }),
})

/** The answer of `GET /api/status`. */
export const StatusView = Type.Object(
  {
    instances: Type.Array(InstanceView, { description: 'Every live instance, from its heartbeat' }),
    missing: Type.Array(Type.String(), { description: 'The expected long-running services with no live instance' }),
    consumer_lag: Type.Array(GroupLagView, { description: 'Each consumer group\'s lag, summed over its instances\' heartbeats' }),
    reports: Type.Array(ReportView, { description: 'The newest reports' }),
  },
  {
    examples: [
      {
        instances: [
          {
            service: 'verifier',
            instance: 'host-4242',
            pid: 4242,
            host: 'host',
            version: '0.1.0',
            started_at: '2026-12-07T02:00:00.000Z',
            last_beat: '2026-12-07T03:00:00.000Z',
            ttl_ms: 15000,
            status: { inFlight: 3, kafka: { state: 'reachable' }, group: 'verifier', lag: { orders: 12 } },
          },
        ],
        missing: ['mail-sink'],
        consumer_lag: [{ group: 'verifier', service: 'verifier', instances: 1, unknown: 0, lag: { orders: 12 } }],
        reports: [],
      },
    ],
  },
)
export type StatusView = Static<typeof StatusView>
