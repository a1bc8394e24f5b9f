/** `bourse api`: the HTTP API (market data, BuyStock, orders, portfolios, events, alerts, BTC orders), OpenAPI docs at /docs, the queue board at /admin/queues. */
import { sql } from 'kysely'
import { ALERT_QUEUES, alertRoutes, createUnsubscribeSigner } from '../alerts/index.ts'
import { createTokenAuthenticator } from '../auth/index.ts'
import { btcRoutes } from '../btc/index.ts'
import { createAppAuthenticator, eventIntakeRoutes, eventQueryRoutes, eventTypeRoutes } from '../events/index.ts'
import { createTaggedViews } from '../platform/tagged-views.ts'
import { createMarketDataRepository, createStockHistoryRepository, createTickStreamHub, marketRoutes } from '../market/index.ts'
import { operationsRoutes, startReportsDrain } from '../operations/index.ts'
import type { Config } from '../platform/config.ts'
import type { Db } from '../database.ts'
import { createHttpApp, type HttpApp } from '../platform/http/app.ts'
import type { Registry } from '../platform/metrics.ts'
import { firstPrincipal } from '../platform/http/auth.ts'
import { QUEUE_BOARD_PATH, queueBoardRoutes } from '../platform/http/queue-board.ts'
import { dashboardRoutes } from '../dashboard/index.ts'
import type { StringProducer } from '../platform/kafka/clients.ts'
import { createKafkaReachability, type KafkaReachability } from '../platform/kafka/reachability.ts'
import type { Logger } from '../platform/logger.ts'
import { closeRedis, createRedis, type Redis } from '../platform/redis.ts'
import { createBuyStockService } from '../trading/buy-stock.service.ts'
import { createOrderStatusHub } from '../trading/order-events.ts'
import { createOrderService } from '../trading/orders.service.ts'
import { tradingRoutes } from '../trading/trading.routes.ts'
import { parseAllowedNetworks } from '../trading/webhooks/callback-url.ts'
import { intOption } from '../platform/command.ts'
import { bourseLicense as license, bourseVersion as version } from '../platform/service.ts'
import { daemons } from './daemons.ts'
import { defineService } from './shape.ts'


/** The connections the API runs on; the caller owns and closes them. */
export interface ApiDeps {
  config: Config
  log: Logger
  redis: Redis
  /** A connection for pub/sub (order status streams); closed by the app. */
  subscriber: Redis
  db: Db
  producer: StringProducer
  /**
   * Whether `producer` reaches the broker (the service's own, also shown in its heartbeat):
   * orders and events are refused at once while it is known to be down.
   * @defaultValue one of the app's own, watching `producer`, closed with the app
   */
  kafka?: KafkaReachability
}

/** Options of {@link buildApiApp}. */
export interface ApiOptions {
  /** Keep-alive and re-read interval of order event streams, keep-alive of tick streams (ms). @defaultValue 15000 */
  heartbeatMs?: number
  /** Where the API records its request durations, served at `GET /metrics`. @defaultValue none: no metrics */
  metrics?: Registry
  /**
   * How often the reports services append to Redis are moved into PostgreSQL (ms); 0 leaves
   * them in Redis. @defaultValue 1000
   */
  reportsDrainIntervalMs?: number
}

/** Builds the API's Fastify app on open connections (the service and the tests use it). */
export async function buildApiApp(deps: ApiDeps, options: ApiOptions = {}): Promise<HttpApp> {
  const { config, log, redis, db, producer } = deps
  const kafka = deps.kafka ?? createKafkaReachability({ log })
  if (!deps.kafka) kafka.watch(producer, 'producer')
  const prices = createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS })
  const allowedNetworks = parseAllowedNetworks(config.CALLBACK_ALLOWED_NETWORKS)
  const hub = createOrderStatusHub(deps.subscriber)
  const retention = { maxRows: config.REPORTS_MAX_ROWS, maxAgeDays: config.REPORTS_RETENTION_DAYS }
  // Blocking stream reads hold their connection: the tick stream gets one of its own, whose
  // command timeout outlasts a blocking read.
  const tickHub = createTickStreamHub({ reader: redis.duplicate({ connectionName: 'api-ticks', commandTimeout: 30_000 }), log })
  const app = await createHttpApp(
    { config, log, redis },
    {
      title: 'Bourse API',
      version,
      description:
        'Trading on the Bourse market: BuyStock checks, orders verified asynchronously with signed callbacks, ' +
        "market data (stocks, histories, OHLC candles, a live tick stream); portfolios and transactions; The Eye's events; product alerts (saved eBay searches emailed on a schedule); BTC buy orders at the cached price, under a cap. " +
        'Every route needs `Authorization: Bearer <token>` (`bourse tokens create USER`), except the probes and the ' +
        "alert emails' unsubscribe links (their signed token is the proof). Ids of alerts and runs are 64-bit " +
        'integers written as decimal strings. ' +
        'Text anywhere in a request (query, path, JSON body) must not contain U+0000 (NUL) or an unpaired UTF-16 ' +
        'surrogate, which PostgreSQL cannot store: such a request is a 400 `validation_failed` naming the field.',
      license: { name: license, identifier: license },
      authenticate: firstPrincipal(
        createTokenAuthenticator(db, { cacheMs: config.AUTH_CACHE_MS }),
        createAppAuthenticator(db, { cacheMs: config.AUTH_CACHE_MS }),
      ),
      // Applications sending events get a budget of their own: the challenge expects about
      // 100 events per second from them, far beyond a person's 60 requests per minute.
      rateLimitMax: (principal) => (principal?.appId !== undefined ? config.EVENTS_RATE_LIMIT_MAX : config.RATE_LIMIT_MAX),
      healthChecks: { postgres: () => sql`select 1`.execute(db) },
      readinessChecks: {
        kafka: async () => {
          kafka.assertReachable()
          await producer.metadata({ topics: [config.ORDERS_TOPIC], forceUpdate: true })
        },
      },
      ...(options.metrics && { metrics: options.metrics }),
      // The queue board is a page a browser navigates to: an admin signs in once for it.
      adminLogin: { landing: QUEUE_BOARD_PATH },
      routes: [
        marketRoutes({
          market: createMarketDataRepository(redis),
          hub: tickHub,
          views: createTaggedViews(redis, { maxBytes: config.MARKET_VIEW_CACHE_BYTES }),
          maxBufferedBytes: config.MARKET_STREAM_MAX_BUFFER_BYTES,
          ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
        }),
        tradingRoutes({
          db,
          redis,
          prices,
          hub,
          buyStock: createBuyStockService({ redis, prices }),
          orders: createOrderService({ db, producer, log, reachability: kafka }, { topic: config.ORDERS_TOPIC, allowedNetworks }),
          schema: config.DATABASE_SCHEMA,
          callbackRetryForMs: config.CALLBACK_RETRY_FOR_MS,
          ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
        }),
        eventIntakeRoutes({ producer, topic: config.EVENTS_TOPIC, log, reachability: kafka }),
        eventQueryRoutes({ db }),
        eventTypeRoutes({ db }),
        alertRoutes({ db, tickMs: config.ALERTS_TICK_MS, unsubscribe: createUnsubscribeSigner(db) }),
        btcRoutes({ db, redis, cap: config.BTC_CAP, maxAgeMs: config.BTC_PRICE_MAX_AGE_MS, quoteKeepMs: config.BTC_QUOTE_READ_KEEP_MS }),
        operationsRoutes({ db, redis, retention, reportsToken: config.REPORTS_TOKEN, expected: daemons }),
        queueBoardRoutes({ queues: ALERT_QUEUES, connection: { url: config.REDIS_URL, prefix: config.QUEUE_PREFIX, log } }),
        dashboardRoutes(),
      ],
    },
  )
  app.addHook('onClose', () => hub.close())
  // Every API instance moves the services' reports from Redis; an entry moved twice is stored once.
  const drain = startReportsDrain({ db, redis, log, retention, intervalMs: options.reportsDrainIntervalMs ?? 1000 })
  app.addHook('onClose', () => drain.close())
  app.addHook('onClose', () => tickHub.close())
  if (!deps.kafka) app.addHook('onClose', () => kafka.close())
  return app
}

export const { run } = defineService({
  spec: {
    name: 'api',
    usage: '[--port 8000] [--host 127.0.0.1]',
    description:
      'Serves the HTTP API: market data (stocks, histories, candles, a live tick stream), BuyStock, orders (202 at once; results by callback, status URL and\n' +
      'Server-Sent Events), portfolios and transactions, events, product alerts, BTC orders. OpenAPI and\n' +
      'Swagger UI at /docs; the queue board at /admin/queues (sign in at /admin/login).',
    options: { port: { type: 'string' }, host: { type: 'string' } },
    help: { port: 'Port to listen on (default: PORT, 8000; 0 picks a free one)', host: 'Interface (default: HOST, 127.0.0.1)' },
  },
  daemon: 'http',
  parse: ({ values }, config) => ({
    port: intOption('port', values.port, 0, 65535) ?? config.PORT,
    host: values.host ?? config.HOST,
  }),
  needs: (_, config) => ({
    redis: { commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS },
    db: { max: 20, queryTimeoutMs: config.DATABASE_QUERY_TIMEOUT_MS },
    producer: true,
    topics: [
      { name: config.ORDERS_TOPIC, partitions: config.ORDERS_TOPIC_PARTITIONS },
      { name: config.EVENTS_TOPIC, partitions: config.EVENTS_TOPIC_PARTITIONS },
    ],
  }),
  async start({ config, log, lifecycle, redis, db, producer, metrics, kafka }, { port, host }) {
    const subscriber = createRedis(config.REDIS_URL, log, 'api-subscriber')
    lifecycle.onClose('redis subscriber', () => closeRedis(subscriber))
    const app = await buildApiApp({ config, log, redis, subscriber, db, producer, kafka }, { metrics: metrics.registry })
    // Closed first: stop taking requests and finish those in flight before the connections go.
    lifecycle.onClose('http', () => app.close())
    const address = await app.listen({ port, host })
    log.info({ address }, 'api listening')
    process.stdout.write(`api listening on ${address} (docs at ${address}/docs)\n`)
    return { status: () => ({ address }) }
  },
})
