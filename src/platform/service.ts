/**
 * One shape for every runnable service. A service declares its command-line options,
 * what it needs (Redis, PostgreSQL, Kafka clients and topics) and how it starts; the
 * platform parses the options, validates the configuration, opens and migrates what was
 * declared, registers every close step in order, beats a heartbeat, serves metrics,
 * logs progress, and turns the outcome into the exit code.
 *
 * Order of shutdown: close steps run in reverse order of registration, and the platform
 * registers the connections and the heartbeat before the service's work. So on SIGTERM
 * the work stops taking more and finishes what is in flight first (consumers commit, the
 * HTTP server drains), then the heartbeat is removed, then Kafka, Redis and PostgreSQL
 * close, and the logs are flushed last. A signal during start-up closes what was opened
 * so far, and whatever is opened after it at once.
 *
 * The platform knows no table: the application makes its `defineService` once with
 * {@link createServiceShape}, naming its database type and handing over its migrations.
 */
import { readFileSync } from 'node:fs'
import type { ParseArgsOptionsConfig } from 'node:util'
import { type Config, ConfigError, kafkaBrokers, loadConfig } from './config.ts'
import { type CommandSpec, intOption, type ParsedCommand, parseCommand, runCommand } from './command.ts'
import { type Kysely, sql } from 'kysely'
import { closeDb, createDb, migrateToLatest, type Migrations } from './db/index.ts'
import { defaultInstanceId, type HeartbeatHandle, startHeartbeat } from './heartbeat.ts'
import { createAdmin, createConsumer, createProducer, ensureTopic, type StringConsumer, type StringProducer } from './kafka/clients.ts'
import { createKafkaReachability, type KafkaReachability } from './kafka/reachability.ts'
import { createLifecycle, type Lifecycle } from './lifecycle.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetrics, type Metrics, startMetricsServer } from './metrics.ts'
import { closeRedis, createRedis, type Redis, type RedisOptions } from './redis.ts'
import { createDependencyReports, createReporter, type DependencyReports, processData, type Reporter } from './reports.ts'
import { FatalError, fatalExitCode } from './retry.ts'
import { isUnavailable } from './unavailable.ts'

const { version, license } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string
  license: string
}

/** Bourse's version (package.json), shown in heartbeats and the API document. */
export const bourseVersion = version
/** Bourse's license (an SPDX identifier, package.json), shown in the API document. */
export const bourseLicense = license

/** A topic the service ensures exists before it starts. */
export interface TopicNeed {
  name: string
  partitions: number
}

/** What a service declares it needs; the platform opens it and closes it. */
export interface ServiceNeeds {
  /** A Redis connection (`ctx.redis`). */
  redis?: RedisOptions | undefined
  /** A PostgreSQL pool (`ctx.db`) with every migration applied. */
  /**
   * A PostgreSQL pool of `max` connections, migrated first unless `migrate` is false;
   * with `queryTimeoutMs`, a query not answered by then fails (a hung server).
   */
  db?: { max: number; migrate?: boolean; queryTimeoutMs?: number } | undefined
  /** An idempotent Kafka producer (`ctx.producer`); consumers always get one, for dead letters. */
  producer?: boolean | undefined
  /** Topics created (if missing) before the start; their partition counts are in `ctx.partitions`. */
  topics?: readonly TopicNeed[] | undefined
  /** A Kafka consumer that never joins a group (`ctx.reader`): for offsets and reading partition ranges. */
  reader?: boolean | undefined
}

/** A consuming service: the platform adds `--group` and `--instance-id` and opens `ctx.consumer`. */
export interface ConsumerNeed {
  /** The default consumer group. */
  group: string
}

type Has<N, K extends keyof ServiceNeeds> = N extends { [P in K]: infer V } ? ([V] extends [undefined | false] ? false : true) : false

/** What every service gets. */
export interface BaseServiceContext {
  /** The service's name (the command). */
  name: string
  /** This instance's id: `--instance-id`, or host and pid. */
  instance: string
  config: Config
  log: Logger
  lifecycle: Lifecycle
  /** This service's metrics registry. */
  metrics: Metrics
  /**
   * Whether the Kafka clients the platform opened for this service reach the broker: each
   * logs a warning when it loses the broker and when it has it back, the heartbeat shows
   * it, and senders call `assertReachable()` to fail fast while it is down.
   */
  kafka: KafkaReachability
}

/** The context a service starts with: the base, plus what it declared (`DB`: the database's tables). */
export type ServiceContext<
  N extends ServiceNeeds = ServiceNeeds,
  C extends ConsumerNeed | undefined = undefined,
  DB = unknown,
> = BaseServiceContext &
  (Has<N, 'redis'> extends true ? { redis: Redis } : unknown) &
  (Has<N, 'db'> extends true ? { db: Kysely<DB> } : unknown) &
  (Has<N, 'producer'> extends true ? { producer: StringProducer } : unknown) &
  (Has<N, 'reader'> extends true ? { reader: StringConsumer } : unknown) &
  (Has<N, 'topics'> extends true ? { partitions: ReadonlyMap<string, number> } : unknown) &
  (C extends ConsumerNeed ? { consumer: StringConsumer; producer: StringProducer; group: string } : unknown)

/** What a started long-running service hands back. */
export interface RunningService {
  /**
   * Settles when the work ends by itself (`--until-idle`, `--once`): fulfilled is exit 0
   * (or the number it gives), rejected is exit 1. Without it the service runs until a
   * signal. A shutdown waits for it before the connections close.
   */
  done?: Promise<unknown>
  /**
   * The service's live totals (the object it keeps counting in): shown in its heartbeat
   * and progress lines, and exported as metrics `bourse_<service>_<field>_total`.
   */
  stats?: object
  /** Fields of `stats` that go up and down (in flight, pending): exported as gauges. */
  gauges?: readonly string[]
  /** More status for the heartbeat and progress lines (last cycle, queue depth). */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>
}

/** A service's definition. */
export interface ServiceDefinition<O extends ParseArgsOptionsConfig, P, N extends ServiceNeeds, C extends ConsumerNeed | undefined, DB = unknown> {
  /** The command line: name, usage, description, options and their help. */
  spec: CommandSpec<O>
  /**
   * Long-running: beats a heartbeat, offers `--instance-id` and `--metrics-port`, logs
   * progress. `'http'` is a long-running service serving its metrics itself (the API).
   * @defaultValue false (a command that does its work and exits)
   */
  daemon?: boolean | 'http'
  /** Consumes a Kafka topic as a group. */
  consumer?: C
  /**
   * Reads the parsed command line (and the configuration, for defaults) into what the
   * service works with, before anything connects: throw UsageError for a bad option, or
   * for an input file that cannot be used.
   * @defaultValue the parsed command line as it is
   */
  parse?: (args: ParsedCommand<O>, config: Config) => P | Promise<P>
  /** What to open, from the options and the configuration. */
  needs?: (options: P, config: Config) => N
  /** Starts the work: an exit code for a command, or the running service. */
  start(ctx: ServiceContext<N, C, DB>, options: P): Promise<number | RunningService>
}

/** What `src/cli.ts` calls. */
export interface CommandModule {
  /** Runs the command with its own arguments; resolves to the process exit code. */
  run(argv: string[]): Promise<number>
}

/** Options of the platform's own, added to every long-running service. */
const daemonOptions = {
  'instance-id': { type: 'string' },
  'metrics-port': { type: 'string' },
} as const
const daemonHelp = {
  'instance-id': 'Names this instance in heartbeats (default: host and pid)',
  'metrics-port': 'Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (default: off)',
}

/** Test seam: where the environment comes from. */
export interface RunOptions {
  env?: NodeJS.ProcessEnv
}

/** Loads the configuration, or prints each bad variable and gives undefined. */
function configOrReport(name: string, env: NodeJS.ProcessEnv): Config | undefined {
  try {
    return loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`bourse ${name}: ${err.message}\n`)
      return undefined
    }
    throw err
  }
}

/** Exit code of a start refused for its configuration (sysexits' EX_CONFIG). */
const configErrorExitCode = 78

/** Reports a {@link FatalError} (logged, and its message on stderr for the operator) and gives its exit code. */
function fatal(name: string, log: Logger, err: FatalError): number {
  log.fatal({ err }, `${name} stopped`)
  process.stderr.write(`bourse ${name}: ${err.message}\n`)
  return fatalExitCode
}

/** An error's message, for a report. */
function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Per-instance consumer lag: for each assigned partition, the end offset minus the group's committed offset. */
async function consumerLag(consumer: StringConsumer): Promise<Record<string, number> | undefined> {
  const assignments = consumer.assignments ?? []
  if (!consumer.isActive() || assignments.length === 0) return undefined
  const topics = assignments.map((a) => ({ topic: a.topic, partitions: a.partitions }))
  const [ends, committed] = await Promise.all([
    consumer.listOffsets({ topics: topics.map((t) => t.topic) }),
    consumer.listCommittedOffsets({ topics }),
  ])
  const lag: Record<string, number> = {}
  for (const { topic, partitions } of topics) {
    let total = 0n
    for (const partition of partitions) {
      const end = ends.get(topic)?.[partition] ?? 0n
      const done = committed.get(topic)?.[partition] ?? -1n
      total += done < 0n ? end : end > done ? end - done : 0n
    }
    lag[topic] = Number(total)
  }
  return lag
}

/**
 * {@link consumerLag}, or undefined when it fails or takes longer than `ms`: a lag request
 * caught by a broker outage retries for minutes, and the heartbeat waiting for it would
 * expire, making a live instance look dead.
 */
async function lagWithin(consumer: StringConsumer, ms: number): Promise<Record<string, number> | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined)
  })
  try {
    return await Promise.race([consumerLag(consumer).catch(() => undefined), late])
  } finally {
    clearTimeout(timer)
  }
}

/** What an application's services share: see {@link createServiceShape}. */
export interface ServiceShape {
  /** Every migration of the application, applied when a service declares `needs.db`. */
  migrations: Migrations
}

/** A defined service: what `src/cli.ts` runs, and `runWith` for tests. */
export type DefinedService = CommandModule & { runWith(argv: string[], options: RunOptions): Promise<number> }

/** Defines a runnable service in an application whose tables are `DB`. */
export type DefineService<DB> = <
  O extends ParseArgsOptionsConfig,
  P = ParsedCommand<O>,
  N extends ServiceNeeds = ServiceNeeds,
  C extends ConsumerNeed | undefined = undefined,
>(
  definition: ServiceDefinition<O, P, N, C, DB>,
) => DefinedService

/**
 * Makes the application's `defineService`, once: `ctx.db` is a `Kysely<DB>`, and a
 * service that declares `needs.db` gets `shape.migrations` applied first. Then
 * `export const { run } = defineService({ ... })` in `src/services/<name>.ts` is all a
 * command module holds besides its options and start.
 */
export function createServiceShape<DB>(shape: ServiceShape): DefineService<DB> {
  const migrations = Object.freeze({ ...shape.migrations })
  return (definition) => defineService(definition, migrations)
}

/** Defines a runnable service (see {@link createServiceShape}). */
function defineService<
  O extends ParseArgsOptionsConfig,
  P,
  N extends ServiceNeeds,
  C extends ConsumerNeed | undefined,
  DB,
>(definition: ServiceDefinition<O, P, N, C, DB>, migrations: Migrations): DefinedService {
  const daemon = definition.daemon ?? false
  const consumerOptions = definition.consumer
    ? { group: { type: 'string', default: definition.consumer.group } }
    : {}
  const spec = {
    ...definition.spec,
    options: { ...definition.spec.options, ...consumerOptions, ...(daemon ? daemonOptions : {}) },
    help: {
      ...definition.spec.help,
      ...(daemon && daemonHelp),
      ...(definition.consumer && {
        group: 'Consumer group; instances in one group share the partitions',
        'instance-id': 'Names this instance in heartbeats, and makes it a static group member: a restart gets its partitions back at once',
      }),
      ...(daemon === 'http' && { 'metrics-port': 'Serve metrics on their own port too (they are always at /metrics of the API)' }),
    },
  } as CommandSpec<O>
  const name = spec.name

  const runWith = (argv: string[], options: RunOptions) =>
    runCommand(async () => {
      const args = parseCommand(spec, argv)
      if (!args) return 0
      const values = args.values as Record<string, string | boolean | undefined>
      const metricsPort = intOption('metrics-port', values['metrics-port'] as string | undefined, 0, 65535)
      const config = configOrReport(name, options.env ?? process.env)
      if (!config) return configErrorExitCode
      const parsed = definition.parse ? await definition.parse(args, config) : (args as P)
      const instance = (values['instance-id'] as string | undefined) ?? defaultInstanceId()
      const log = createLogger({ level: config.LOG_LEVEL }).child({ service: name })
      const lifecycle = createLifecycle(log)
      lifecycle.onClose('logger', () => log.flush())
      // Process metrics only where they can be scraped: a one-shot command has no use for them.
      const metrics = createMetrics({ labels: { service: name }, processMetrics: daemon !== false })
      const needs = (definition.needs?.(parsed, config) ?? {}) as ServiceNeeds
      // Set once Redis is open (a long-running service only): what the service files about itself.
      let reporter: Reporter | undefined
      let dependencies: DependencyReports | undefined
      const kafka = createKafkaReachability({
        log,
        onChange: (reachable, err) => (reachable ? dependencies?.recovered('kafka') : dependencies?.lost('kafka', err)),
      })
      lifecycle.onClose('kafka reachability', () => kafka.close())
      const ctx: Record<string, unknown> = { name, instance, config, log, lifecycle, metrics, kafka }
      let watchesKafka = false
      const brokers = kafkaBrokers(config)

      const open = async () => {
        if (needs.db) {
          const db = createDb<DB>({
            url: config.DATABASE_URL,
            schema: config.DATABASE_SCHEMA,
            max: needs.db.max,
            connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
            ...(needs.db.queryTimeoutMs !== undefined && { queryTimeoutMs: needs.db.queryTimeoutMs }),
            log,
          })
          lifecycle.onClose('postgres', () => closeDb(db))
          ctx.db = db
          if (needs.db.migrate ?? true) await migrateToLatest(db, config.DATABASE_SCHEMA, migrations)
        }
        let redis: Redis | undefined
        if (needs.redis || daemon) {
          redis = createRedis(config.REDIS_URL, log, name, needs.redis ?? {})
          lifecycle.onClose('redis', () => closeRedis(redis!))
          if (needs.redis) ctx.redis = redis
          if (daemon) {
            reporter = createReporter({ redis, log, service: name, instance, streamMaxLen: config.REPORTS_STREAM_MAX_LEN })
            dependencies = watchDependencies(redis, ctx.db as Kysely<unknown> | undefined, reporter)
          }
        }
        const topics = [...(needs.topics ?? [])]
        if (topics.length > 0) {
          const admin = createAdmin({ brokers })
          const partitions = new Map<string, number>()
          try {
            for (const topic of topics) partitions.set(topic.name, await ensureTopic(admin, topic.name, topic.partitions, log))
          } finally {
            await admin.close()
          }
          ctx.partitions = partitions
        }
        if (needs.producer || definition.consumer) {
          const producer = createProducer({ brokers })
          lifecycle.onClose('kafka producer', () => producer.close())
          kafka.watch(producer, 'producer')
          watchesKafka = true
          ctx.producer = producer
        }
        if (needs.reader) {
          const reader = createConsumer({ brokers }, `bourse-${name}`)
          lifecycle.onClose('kafka reader', () => reader.close())
          kafka.watch(reader, 'reader')
          watchesKafka = true
          ctx.reader = reader
        }
        if (definition.consumer) {
          const group = values.group as string
          const instanceId = values['instance-id'] as string | undefined
          const consumer = createConsumer({ brokers }, group, instanceId === undefined ? {} : { instanceId })
          lifecycle.onClose('kafka consumer', () => consumer.close(true))
          kafka.watch(consumer, 'consumer')
          watchesKafka = true
          ctx.consumer = consumer
          ctx.group = group
        }
        // Before the work starts, so a port already taken is a start that failed, not a
        // service running without the metrics it was asked for.
        if (metricsPort !== undefined) {
          const server = await startMetricsServer(metrics.registry, metricsPort)
          lifecycle.onClose('metrics server', () => server.close())
          log.info({ url: `${server.url}/metrics` }, 'serving metrics')
          process.stdout.write(`${name} metrics at ${server.url}/metrics\n`)
        }
        return redis
      }

      /**
       * Reports transitions of the connections the shape opened: Redis by its events (an
       * error saying it is unreachable, or a connection closed, is lost; ready again is
       * recovered), Kafka by the reachability above, PostgreSQL by a `select 1` every
       * heartbeat interval (a pool has no event for a server gone). Registered right after
       * Redis, so its close step runs before Redis closes: the last report is appended.
       */
      const watchDependencies = (redis: Redis, db: Kysely<unknown> | undefined, reports: Reporter): DependencyReports => {
        const watched = createDependencyReports(reports, log)
        const shuttingDown = () => lifecycle.signal.aborted
        redis.on('error', (err) => {
          if (!shuttingDown() && isUnavailable(err)) watched.lost('redis', err)
        })
        redis.on('close', () => {
          if (!shuttingDown()) watched.lost('redis', new Error('connection closed'))
        })
        redis.on('ready', () => watched.recovered('redis'))
        if (db) {
          let probing = false
          const timeoutMs = Math.max(config.DATABASE_CONNECT_TIMEOUT_MS, config.HEARTBEAT_INTERVAL_MS)
          const probe = setInterval(() => {
            if (probing || shuttingDown()) return
            probing = true
            let timer: NodeJS.Timeout | undefined
            const answered = sql`select 1`.execute(db)
            const lateError = new Error(`no answer to select 1 within ${timeoutMs} ms`)
            const late = new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(lateError), timeoutMs)
            })
            Promise.race([answered, late])
              .then(
                () => watched.recovered('postgres'),
                (err: unknown) => {
                  // Anything else (a refused statement) says nothing about the server being there.
                  if (!shuttingDown() && (isUnavailable(err) || err === lateError)) watched.lost('postgres', err)
                },
              )
              .finally(() => {
                clearTimeout(timer)
                probing = false
              })
            answered.catch(() => {})
          }, config.HEARTBEAT_INTERVAL_MS)
          probe.unref()
          lifecycle.onClose('postgres probe', () => clearInterval(probe))
        }
        lifecycle.onClose('reports', async () => {
          const reason = await lifecycle.stopping
          if (failure !== undefined) {
            reports.report('error', serviceStarted ? 'failed' : 'start_failed', { reason, error: errorMessage(failure) })
          } else if (serviceStarted) {
            reports.report('info', 'stopped', { reason })
          }
          // Redis down (or hung): the reports are lost with the process, which the log says.
          let timer: NodeJS.Timeout | undefined
          await Promise.race([reports.flush(), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))])
          clearTimeout(timer)
          if (reports.pending > 0) log.warn({ pending: reports.pending }, 'reports not appended before the stop')
        })
        return watched
      }
      /** Whether the work started (a start report was filed), and why it failed, if it did. */
      let serviceStarted = false
      let failure: unknown

      let redis: Redis | undefined
      try {
        redis = await open()
      } catch (err) {
        failure = err
        log.error({ err }, `${name} could not start`)
        await lifecycle.shutdown('done')
        return 1
      }

      // Registered before the work's own close steps, so it is removed after them: a
      // draining API stays listed until it has stopped taking requests.
      let heartbeat: HeartbeatHandle | undefined
      if (daemon && redis) lifecycle.onClose('heartbeat', () => heartbeat?.stop())

      let started: number | RunningService
      try {
        started = await definition.start(ctx as ServiceContext<N, C, DB>, parsed)
      } catch (err) {
        failure = err
        const code = err instanceof FatalError ? fatal(name, log, err) : undefined
        await lifecycle.shutdown('done')
        if (code !== undefined) return code
        throw err
      }
      if (typeof started === 'number') {
        await lifecycle.shutdown('done')
        return started
      }

      const running = started
      // Handled here at once: the heartbeat and metrics below take turns before it is awaited,
      // and a work that fails meanwhile must not be an unhandled rejection.
      running.done?.catch(() => {})
      const consumer = ctx.consumer as StringConsumer | undefined
      const ownStatus = async () => ({ ...running.stats, ...(await running.status?.()) })
      // The heartbeat adds the consumer's lag (two Kafka requests) and whether the broker is
      // reachable; progress lines do not.
      const status = async () => ({
        ...(await ownStatus()),
        ...(watchesKafka && { kafka: kafka.status() }),
        ...(consumer && { group: ctx.group as string }),
        ...(consumer && kafka.reachable && { lag: await lagWithin(consumer, config.HEARTBEAT_INTERVAL_MS) }),
      })
      try {
        if (running.stats) metrics.exposeStats(name, running.stats, running.gauges)
        if (daemon && redis) {
          heartbeat = await startHeartbeat(redis, log, {
            service: name,
            instance,
            version,
            intervalMs: config.HEARTBEAT_INTERVAL_MS,
            status,
          })
        }
      } catch (err) {
        log.error({ err }, `${name} could not start its heartbeat or metrics`)
        failure = err
        await lifecycle.shutdown('done')
        return 1
      }
      serviceStarted = true
      reporter?.report('info', 'started', processData(version))
      if (running.stats || running.status) {
        const progress = setInterval(() => {
          void ownStatus().then(
            (s) => log.info(s, 'progress'),
            (err: unknown) => log.warn({ err }, 'status failed'),
          )
        }, 10_000)
        lifecycle.onClose('progress', () => clearInterval(progress))
      }
      const done = running.done
      if (!done) {
        await lifecycle.stopping
        await lifecycle.shutdown()
        return 0
      }
      // Registered last, so closed first: a shutdown lets the work finish before the
      // connections it uses go.
      lifecycle.onClose(name, () => done.catch(() => {}))
      try {
        const result = await done
        return typeof result === 'number' ? result : 0
      } catch (err) {
        failure = err
        if (err instanceof FatalError) return fatal(name, log, err)
        log.error({ err }, `${name} failed`)
        return 1
      } finally {
        await lifecycle.shutdown('done')
      }
    })

  return { run: (argv) => runWith(argv, {}), runWith }
}
