/**
 * The one place that reads `process.env`. Every setting Bourse knows is declared here,
 * validated once at start and frozen; a missing or malformed value stops the start with
 * a message naming the variable.
 */
import { availableParallelism } from 'node:os'
import Type, { type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import Value from 'typebox/value'
import { MAILBOX_PATTERN } from './mail/address.ts'
import { quote } from './quote.ts'

const Url = (protocols: string[], example: string) =>
  Type.String({ pattern: `^(${protocols.join('|')})://`, description: `a URL (${protocols.join(' or ')}) such as ${example}` })

/** The environment Bourse reads, with defaults for a local machine. */
export const ConfigSchema = Type.Object({
  /** Redis holding the market data contract (`stock1`, `user1`, ...). @defaultValue redis://127.0.0.1:6379/0 */
  REDIS_URL: Url(['redis', 'rediss'], 'redis://127.0.0.1:6379/0'),
  /**
   * Longest the API waits for a Redis answer, in ms; beyond it (Redis down or hung) the
   * request gets 503 instead of waiting for Redis to come back. @defaultValue 1000
   */
  REDIS_COMMAND_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 600_000 }),
  /** Longest a process waits for a new PostgreSQL connection, in ms. @defaultValue 5000 */
  DATABASE_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000 }),
  /**
   * Longest the API waits for a PostgreSQL answer, in ms; beyond it (PostgreSQL hung) the
   * request gets 503. Its migrations at start run under it too. @defaultValue 10000
   */
  DATABASE_QUERY_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  /** Comma-separated Kafka bootstrap brokers, `host:port`. @defaultValue 127.0.0.1:9092 */
  KAFKA_BROKERS: Type.String({ pattern: '^[^,:\\s]+:\\d{1,5}(,[^,:\\s]+:\\d{1,5})*$' }),
  /** PostgreSQL for accounts and events (later services). @defaultValue postgres://postgres@127.0.0.1:5432/bourse */
  DATABASE_URL: Url(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/bourse'),
  /** pino level. @defaultValue info */
  // An enum, not a union of literals: typebox stops reporting errors after a failed union,
  // which would hide the variables after a bad LOG_LEVEL.
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** Time between two heartbeats of a long-running service; an instance silent for three is gone from `bourse status` (ms). @defaultValue 5000 */
  HEARTBEAT_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 600_000 }),
  /** Kafka topic carrying price ticks. @defaultValue main_topic */
  MARKET_TOPIC: Type.String({ pattern: '^[A-Za-z0-9._-]{1,249}$' }),
  /** Partitions given to the market topic when Bourse creates it. @defaultValue 3 */
  MARKET_TOPIC_PARTITIONS: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** Simulated cost of one performance computation, in ms (the seed's 3 s). @defaultValue 3000 */
  PERFORMANCE_COST_MS: Type.Integer({ minimum: 0, maximum: 600_000 }),
  /** How often the performance service looks for changed stocks, in ms. @defaultValue 60000 */
  PERFORMANCE_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 86_400_000 }),
  /** Worker threads computing performance. @defaultValue the number of cores */
  PERFORMANCE_WORKERS: Type.Integer({ minimum: 1, maximum: 256 }),
  /** Longest a stock's `GET stockN` JSON may lag its history while ticks stream in, in ms. @defaultValue 1000 */
  MATERIALIZE_INTERVAL_MS: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
  /** Approximate length of the tick stream `bourse:ticks` (one entry per stock and applied batch) behind the API's SSE. @defaultValue 10000 */
  MARKET_STREAM_MAX_LEN: Type.Integer({ minimum: 100, maximum: 10_000_000 }),
  /** Most bytes an API tick stream may hold for a slow client before it is disconnected. @defaultValue 1048576 */
  MARKET_STREAM_MAX_BUFFER_BYTES: Type.Integer({ minimum: 1024, maximum: 1_073_741_824 }),
  /** Most bytes of market answers (stock list, newest pages, candles) the API keeps in memory while their data is unchanged; 0 keeps none. @defaultValue 33554432 */
  MARKET_VIEW_CACHE_BYTES: Type.Integer({ minimum: 0, maximum: 4_294_967_296 }),
  /** Where `bourse infra` keeps downloaded jars, data and logs. @defaultValue .bourse */
  BOURSE_HOME: Type.String({ minLength: 1 }),
  /** PostgreSQL schema holding Bourse's tables (tests use one each). @defaultValue public */
  DATABASE_SCHEMA: Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$' }),
  /** Interface the API listens on (0.0.0.0 in containers). @defaultValue 127.0.0.1 */
  HOST: Type.String({ minLength: 1 }),
  /** Port of the API. @defaultValue 8000 */
  PORT: Type.Integer({ minimum: 0, maximum: 65535 }),
  /** Largest request body the API reads, in bytes; larger bodies get 413. @defaultValue 65536 */
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, maximum: 104_857_600 }),
  /** Requests one caller (token, or address without one) may make per window. @defaultValue 60 */
  RATE_LIMIT_MAX: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
  /** Requests one trusted application (an event-intake token) may make per window. @defaultValue 6000 */
  EVENTS_RATE_LIMIT_MAX: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
  /** The rate limit's window, in ms. @defaultValue 60000 */
  RATE_LIMIT_WINDOW_MS: Type.Integer({ minimum: 1000, maximum: 86_400_000 }),
  /**
   * Bearer token `GET /metrics` requires; unset, the metrics are open (keep the port
   * private then). @defaultValue unset
   */
  METRICS_TOKEN: Type.Optional(Type.String({ pattern: '^\\S+$', description: 'a bearer token without spaces' })),
  /**
   * Longest the API waits for a request's head (line and headers), in ms; a client still
   * sending them then gets 408 and its connection closed. At most `HTTP_REQUEST_TIMEOUT_MS`
   * (it is capped to it). @defaultValue 10000
   */
  HTTP_HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  /**
   * Longest the API waits for a whole request, head and body, in ms (a body announced and
   * never sent holds a connection no longer). It ends when the request is received, so
   * an event stream's answer is not cut. @defaultValue 30000
   */
  HTTP_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  /** How long an idle keep-alive connection stays open between two requests, in ms. @defaultValue 72000 */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  /**
   * Most connections the API keeps open from one address; more are closed at once. 0
   * allows any number (behind a proxy, where every client has the proxy's address). @defaultValue 256
   */
  HTTP_MAX_CONNECTIONS_PER_ADDRESS: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  /** How long a checked API token is trusted without asking PostgreSQL again, in ms (revocation delay). @defaultValue 5000 */
  AUTH_CACHE_MS: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
  /** Kafka topic carrying orders to the verifier. @defaultValue orders */
  ORDERS_TOPIC: Type.String({ pattern: '^[A-Za-z0-9._-]{1,249}$' }),
  /** Partitions given to the orders topic when Bourse creates it. @defaultValue 3 */
  ORDERS_TOPIC_PARTITIONS: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** The external verification API the verifier calls, `POST` with `{ user }`. @defaultValue http://127.0.0.1:8100/verify */
  VERIFY_URL: Url(['http', 'https'], 'http://127.0.0.1:8100/verify'),
  /** A verification longer than this is stalled: aborted, the order rejected (ms). @defaultValue 60000 */
  VERIFY_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
  /** Verifications one verifier instance keeps in flight. @defaultValue 5000 */
  VERIFY_MAX_IN_FLIGHT: Type.Integer({ minimum: 1, maximum: 100_000 }),
  /** How long a failing callback is retried before it becomes a dead letter (ms). @defaultValue 86400000 */
  CALLBACK_RETRY_FOR_MS: Type.Integer({ minimum: 0, maximum: 2_592_000_000 }),
  /** First retry delay of a failing callback; it doubles per attempt, with jitter (ms). @defaultValue 1000 */
  CALLBACK_RETRY_BASE_MS: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
  /** Longest delay between two attempts of a callback (ms). @defaultValue 3600000 */
  CALLBACK_RETRY_MAX_MS: Type.Integer({ minimum: 1, maximum: 86_400_000 }),
  /** Time allowed for one callback request (ms). @defaultValue 10000 */
  CALLBACK_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 600_000 }),
  /** Callbacks one sender delivers at once. @defaultValue 256 */
  CALLBACK_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 10_000 }),
  /**
   * Comma-separated addresses or CIDR ranges callbacks may reach although they are
   * loopback, private or link-local (for example `127.0.0.1` in tests). @defaultValue (none)
   */
  CALLBACK_ALLOWED_NETWORKS: Type.String({ pattern: '^[0-9a-fA-F.:/,]*$' }),
  /** Kafka topic taking events from applications (The Eye). @defaultValue events */
  EVENTS_TOPIC: Type.String({ pattern: '^[A-Za-z0-9._-]{1,249}$' }),
  /** Partitions given to the events topic when Bourse creates it. @defaultValue 3 */
  EVENTS_TOPIC_PARTITIONS: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** What the events worker does with an event whose type has no schema: `store` it unvalidated, or `reject` it as an error. @defaultValue store */
  EVENTS_UNKNOWN_TYPE: Type.Enum(['store', 'reject']),
  /** How far in the future an event's timestamp may be (clock skew) before it is an error, in ms. @defaultValue 60000 */
  EVENTS_FUTURE_TOLERANCE_MS: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
  /** Most events the worker validates and inserts in one batch (2,500: fewer commits and round trips per event than 1,000, measured with bench/events.bench.ts). @defaultValue 2500 */
  EVENTS_BATCH_SIZE: Type.Integer({ minimum: 1, maximum: 100_000 }),
  // Product alerts: scheduling
  /** The alerts scheduler's tick, in ms; it must divide 2 minutes (every frequency is a multiple of it). @defaultValue 120000 */
  ALERTS_TICK_MS: Type.Integer({ minimum: 1000, maximum: 120_000 }),
  /** Due alerts the distributor claims and hands to the queue in one batch. @defaultValue 500 */
  ALERTS_BATCH_SIZE: Type.Integer({ minimum: 1, maximum: 100_000 }),
  /** Runs one alerts worker handles at once. @defaultValue 20 */
  ALERTS_WORKER_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** Attempts of a run before it is failed (eBay or the database failing). @defaultValue 5 */
  ALERTS_JOB_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 100 }),
  /** First retry delay of a failed run; it doubles per attempt (ms). @defaultValue 5000 */
  ALERTS_RETRY_BASE_MS: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
  /**
   * How long a run job stays locked to its worker without a renewal, in ms: a worker killed
   * mid-run gives its jobs back after about this long (BullMQ's stalled-job check). @defaultValue 30000
   */
  ALERTS_JOB_LOCK_MS: Type.Integer({ minimum: 1000, maximum: 3_600_000 }),
  /**
   * How long a claimed alert email is held by its sender, in ms; after a crash another
   * sender sends it after this. Must exceed an SMTP exchange (SMTP_TIMEOUT_MS). @defaultValue 60000
   */
  ALERTS_EMAIL_LEASE_MS: Type.Integer({ minimum: 100, maximum: 86_400_000 }),
  /** How long an alert email is retried (SMTP down or refusing) before it is kept as a dead letter (ms). @defaultValue 86400000 */
  ALERTS_EMAIL_RETRY_FOR_MS: Type.Integer({ minimum: 0, maximum: 2_592_000_000 }),
  /** Prefix of the BullMQ keys in Redis (tests use one each). @defaultValue bull */
  QUEUE_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
  // Product alerts: insights
  /**
   * Least fall of an alert's cheapest price, in percent against the cheapest of the
   * previous `INSIGHT_WINDOW_MS`, that makes a price-drop insight; a decimal, 0 < x <= 100
   * (the drop is computed exactly, so `10` fires at 10.00% and not at 9.99%). @defaultValue 10
   */
  INSIGHT_DROP_PERCENT: Type.String({
    pattern: '^(100(\\.0+)?|[1-9]\\d?(\\.\\d+)?|0\\.\\d*[1-9]\\d*)$',
    description: 'A decimal percentage above 0 and at most 100, for example 10 or 7.5',
  }),
  /** How far back a price drop looks for the previous cheapest price, in ms (2 days). @defaultValue 172800000 */
  INSIGHT_WINDOW_MS: Type.Integer({ minimum: 1000, maximum: 2_592_000_000 }),
  /** How long the cheapest price must stay the same before a flat-market insight, in ms (2 days). @defaultValue 172800000 */
  INSIGHT_FLAT_MS: Type.Integer({ minimum: 1000, maximum: 2_592_000_000 }),
  /**
   * Least time between two insight emails of one alert, in ms (one day); 0 sends every
   * insight as it comes. @defaultValue 86400000
   */
  INSIGHT_MIN_INTERVAL_MS: Type.Integer({ minimum: 0, maximum: 2_592_000_000 }),
  // Product alerts: eBay
  /**
   * Base URL of the eBay APIs the product alerts call (OAuth token and Browse search). By
   * default the local simulation `bourse ebay-sim`; the real one is https://api.ebay.com,
   * its sandbox https://api.sandbox.ebay.com. @defaultValue http://127.0.0.1:8200
   */
  EBAY_BASE_URL: Url(['http', 'https'], 'https://api.ebay.com'),
  /** The eBay application's client id (App ID), for the OAuth client credentials grant. @defaultValue bourse-sim (the simulation's) */
  EBAY_CLIENT_ID: Type.String({ pattern: '^\\S+$', description: 'An id without spaces' }),
  /**
   * The eBay application's client secret (Cert ID). Any non-empty text: no pattern, so that
   * no error message ever prints it. @defaultValue bourse-sim-secret (the simulation's)
   */
  EBAY_CLIENT_SECRET: Type.String({ minLength: 1 }),
  /** eBay marketplace searched (`X-EBAY-C-MARKETPLACE-ID`), such as EBAY_US, EBAY_GB or EBAY_DE. @defaultValue EBAY_US */
  EBAY_MARKETPLACE_ID: Type.String({ pattern: '^EBAY_[A-Z_]{2,10}$' }),
  /** Longest one eBay request (token or search) may take, in ms; beyond it the search fails as unavailable and is retried. @defaultValue 10000 */
  EBAY_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000 }),
  // Email
  /**
   * The SMTP server mail is sent through: `smtp://` (STARTTLS when the server offers it)
   * or `smtps://` (TLS from the start), with `user:password@` when it wants a login. The
   * default is `bourse mail-sink`'s port. @defaultValue smtp://127.0.0.1:1025
   */
  SMTP_URL: Url(['smtp', 'smtps'], 'smtp://user:password@smtp.example:587'),
  /** The sender of Bourse's mail: an address, or `Name <address>`. @defaultValue Bourse alerts <alerts@bourse.localhost> */
  MAIL_FROM: Type.String({ pattern: MAILBOX_PATTERN, description: 'an email address, or Name <address> (quote a name holding , ; or :)' }),
  /** Longest wait for the SMTP server to connect, greet or answer a command, in ms. @defaultValue 10000 */
  SMTP_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 600_000 }),
  /**
   * Where a mail reader reaches the API (behind any proxy), to build the links in mail
   * such as one-click unsubscribe. @defaultValue http://127.0.0.1:8000
   */
  PUBLIC_URL: Url(['http', 'https'], 'https://bourse.example'),
  // BTC price
  /**
   * The BTC price providers in failover order with their base URLs, `name=url,...`
   * (coinbase, coingecko, kraken). @defaultValue coinbase=https://api.coinbase.com,coingecko=https://api.coingecko.com,kraken=https://api.kraken.com
   */
  BTC_PROVIDER_URLS: Type.String({ minLength: 1 }),
  /** Longest one provider call may take, in ms; beyond it the next provider is asked. @defaultValue 5000 */
  BTC_PROVIDER_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 600_000 }),
  /** Time between two polls of the BTC price, in ms. @defaultValue 15000 */
  BTC_POLL_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 86_400_000 }),
  /**
   * A provider answer moving a price by more than this percentage against the stored quote
   * is held back unless another provider confirms it. @defaultValue 10
   */
  BTC_OUTLIER_PERCENT: Type.String({ pattern: '^(?!0+(\\.0+)?$)\\d{1,3}(\\.\\d{1,4})?$', description: 'a percentage above 0 such as 10 or 2.5' }),
  /** Age beyond which a stored BTC quote is stale (orders are refused), in ms. @defaultValue 60000 */
  BTC_PRICE_MAX_AGE_MS: Type.Integer({ minimum: 1000, maximum: 86_400_000 }),
  /**
   * How long the API prices orders on one read of the stored quote before reading it again,
   * in ms (0: a read per event-loop turn). @defaultValue 100
   */
  BTC_QUOTE_READ_KEEP_MS: Type.Integer({ minimum: 0, maximum: 1000 }),
  /** CoinGecko demo API key, sent as `x-cg-demo-api-key`. @defaultValue unset */
  COINGECKO_API_KEY: Type.Optional(Type.String({ pattern: '^\\S+$', description: 'a key without spaces' })),
  // BTC orders
  /**
   * Most BTC all buy orders together may reach, a positive decimal of up to 8 decimals;
   * an order that would cross it is refused. @defaultValue 100
   */
  BTC_CAP: Type.String({ pattern: '^(?:0|[1-9]\\d{0,11})(?:\\.\\d{1,8})?$', description: 'a decimal BTC amount of up to 8 decimals, such as 100' }),
  // Service reports
  /**
   * Bearer token a service or script outside Bourse files reports with (`POST
   * /api/reports`), besides admin tokens; unset, only admin tokens may. At least 16
   * characters. @defaultValue unset
   */
  REPORTS_TOKEN: Type.Optional(Type.String({ pattern: '^\\S{16,}$', description: 'a bearer token of at least 16 characters without spaces' })),
  /** Most reports kept in PostgreSQL; older ones are deleted as new ones come. @defaultValue 10000 */
  REPORTS_MAX_ROWS: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
  /** Days a report is kept in PostgreSQL. @defaultValue 30 */
  REPORTS_RETENTION_DAYS: Type.Integer({ minimum: 1, maximum: 36_500 }),
  /** About how many reports the Redis stream holds on their way to PostgreSQL (`XADD MAXLEN ~`). @defaultValue 10000 */
  REPORTS_STREAM_MAX_LEN: Type.Integer({ minimum: 10, maximum: 10_000_000 }),
})

/** Validated, frozen configuration. */
export type Config = Readonly<Static<typeof ConfigSchema>>

/** Each variable's default; undefined leaves an optional variable unset. */
const defaults: Record<keyof Config, string | undefined> = {
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  REDIS_COMMAND_TIMEOUT_MS: '1000',
  DATABASE_CONNECT_TIMEOUT_MS: '5000',
  DATABASE_QUERY_TIMEOUT_MS: '10000',
  KAFKA_BROKERS: '127.0.0.1:9092',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/bourse',
  LOG_LEVEL: 'info',
  HEARTBEAT_INTERVAL_MS: '5000',
  MARKET_TOPIC: 'main_topic',
  MARKET_TOPIC_PARTITIONS: '3',
  PERFORMANCE_COST_MS: '3000',
  PERFORMANCE_INTERVAL_MS: '60000',
  PERFORMANCE_WORKERS: String(availableParallelism()),
  MATERIALIZE_INTERVAL_MS: '1000',
  MARKET_STREAM_MAX_LEN: '10000',
  MARKET_STREAM_MAX_BUFFER_BYTES: '1048576',
  MARKET_VIEW_CACHE_BYTES: '33554432',
  BOURSE_HOME: '.bourse',
  DATABASE_SCHEMA: 'public',
  HOST: '127.0.0.1',
  PORT: '8000',
  BODY_LIMIT_BYTES: '65536',
  RATE_LIMIT_MAX: '60',
  EVENTS_RATE_LIMIT_MAX: '6000',
  RATE_LIMIT_WINDOW_MS: '60000',
  METRICS_TOKEN: undefined,
  HTTP_HEADERS_TIMEOUT_MS: '10000',
  HTTP_REQUEST_TIMEOUT_MS: '30000',
  HTTP_KEEP_ALIVE_TIMEOUT_MS: '72000',
  HTTP_MAX_CONNECTIONS_PER_ADDRESS: '256',
  AUTH_CACHE_MS: '5000',
  ORDERS_TOPIC: 'orders',
  ORDERS_TOPIC_PARTITIONS: '3',
  VERIFY_URL: 'http://127.0.0.1:8100/verify',
  VERIFY_TIMEOUT_MS: '60000',
  VERIFY_MAX_IN_FLIGHT: '5000',
  CALLBACK_RETRY_FOR_MS: '86400000',
  CALLBACK_RETRY_BASE_MS: '1000',
  CALLBACK_RETRY_MAX_MS: '3600000',
  CALLBACK_TIMEOUT_MS: '10000',
  CALLBACK_CONCURRENCY: '256',
  CALLBACK_ALLOWED_NETWORKS: '',
  EVENTS_TOPIC: 'events',
  EVENTS_TOPIC_PARTITIONS: '3',
  EVENTS_UNKNOWN_TYPE: 'store',
  EVENTS_FUTURE_TOLERANCE_MS: '60000',
  EVENTS_BATCH_SIZE: '2500',
  PUBLIC_URL: 'http://127.0.0.1:8000',
  ALERTS_TICK_MS: '120000',
  ALERTS_BATCH_SIZE: '500',
  ALERTS_WORKER_CONCURRENCY: '20',
  ALERTS_JOB_ATTEMPTS: '5',
  ALERTS_RETRY_BASE_MS: '5000',
  ALERTS_EMAIL_RETRY_FOR_MS: '86400000',
  ALERTS_JOB_LOCK_MS: '30000',
  ALERTS_EMAIL_LEASE_MS: '60000',
  QUEUE_PREFIX: 'bull',
  INSIGHT_DROP_PERCENT: '10',
  INSIGHT_WINDOW_MS: '172800000',
  INSIGHT_FLAT_MS: '172800000',
  INSIGHT_MIN_INTERVAL_MS: '86400000',
  // Product alerts: eBay
  EBAY_BASE_URL: 'http://127.0.0.1:8200',
  EBAY_CLIENT_ID: 'bourse-sim',
  EBAY_CLIENT_SECRET: 'bourse-sim-secret',
  EBAY_MARKETPLACE_ID: 'EBAY_US',
  EBAY_TIMEOUT_MS: '10000',
  SMTP_URL: 'smtp://127.0.0.1:1025',
  MAIL_FROM: 'Bourse alerts <alerts@bourse.localhost>',
  SMTP_TIMEOUT_MS: '10000',
  // BTC price
  BTC_PROVIDER_URLS: 'coinbase=https://api.coinbase.com,coingecko=https://api.coingecko.com,kraken=https://api.kraken.com',
  BTC_PROVIDER_TIMEOUT_MS: '5000',
  BTC_POLL_INTERVAL_MS: '15000',
  BTC_OUTLIER_PERCENT: '10',
  BTC_PRICE_MAX_AGE_MS: '60000',
  BTC_QUOTE_READ_KEEP_MS: '100',
  COINGECKO_API_KEY: undefined,
  // BTC orders
  BTC_CAP: '100',
  // Service reports
  REPORTS_TOKEN: undefined,
  REPORTS_MAX_ROWS: '10000',
  REPORTS_RETENTION_DAYS: '30',
  REPORTS_STREAM_MAX_LEN: '10000',
}

const check = Compile(ConfigSchema)
const integerKeys = Object.entries(ConfigSchema.properties)
  .filter(([, schema]) => (schema as { type?: unknown }).type === 'integer')
  .map(([key]) => key)

/** Thrown when the environment does not describe a valid configuration. */
export class ConfigError extends Error {
  override name = 'ConfigError'
  /** One entry per bad variable. */
  readonly problems: ReadonlyArray<{ variable: string; message: string }>
  constructor(problems: Array<{ variable: string; message: string }>) {
    super(
      `Invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}`,
    )
    this.problems = problems
  }
}

/**
 * Reads the configuration from an environment (by default `process.env`). Empty values
 * count as unset. Throws {@link ConfigError} naming every malformed variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(defaults) as Array<keyof Config>) {
    const value = env[key]
    const text = value === undefined || value.trim() === '' ? defaults[key] : value.trim()
    if (text !== undefined) raw[key] = text
  }
  const converted = Value.Convert(ConfigSchema, { ...raw }) as Record<string, unknown>
  // Value.Convert truncates "2.9" to 2 and reads "true" or "0x10" as numbers; an integer
  // variable must be written as a decimal whole number, so anything else stays text and
  // fails the check below.
  for (const key of integerKeys) {
    if (!/^[+-]?\d+$/.test(String(raw[key]))) converted[key] = raw[key]
  }
  if (!check.Check(converted)) {
    const problems = new Map<string, string>()
    for (const error of check.Errors(converted)) {
      const variable = error.instancePath.replace(/^\//, '') || 'environment'
      if (!problems.has(variable)) {
        // A pattern is no message for a person ("must match pattern ^(...)$" for MAIL_FROM):
        // the variable's description says what was expected instead.
        const expected = (ConfigSchema.properties as Record<string, { description?: string } | undefined>)[variable]?.description
        const message = error.keyword === 'pattern' && expected !== undefined ? `must be ${expected}` : error.message
        problems.set(variable, `${message} (got ${quote(raw[variable])})`)
      }
    }
    throw new ConfigError([...problems].map(([variable, message]) => ({ variable, message })))
  }
  return Object.freeze(converted as Config)
}

/** The Kafka bootstrap brokers as a list. */
export function kafkaBrokers(config: Pick<Config, 'KAFKA_BROKERS'>): string[] {
  return config.KAFKA_BROKERS.split(',')
}
