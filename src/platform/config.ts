/**
 * The one place that reads `process.env`. Every setting Bourse knows is declared here,
 * validated once at start and frozen; a missing or malformed value stops the start with
 * a message naming the variable.
 */
import { availableParallelism } from 'node:os'
import Type, { type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import Value from 'typebox/value'

const Url = (protocols: string[], example: string) =>
  Type.String({ pattern: `^(${protocols.join('|')})://`, description: `URL, for example ${example}` })

/** The environment Bourse reads, with defaults for a local machine. */
export const ConfigSchema = Type.Object({
  /** Redis holding the market data contract (`stock1`, `user1`, ...). @defaultValue redis://127.0.0.1:6379/0 */
  REDIS_URL: Url(['redis', 'rediss'], 'redis://127.0.0.1:6379/0'),
  /** Comma-separated Kafka bootstrap brokers, `host:port`. @defaultValue 127.0.0.1:9092 */
  KAFKA_BROKERS: Type.String({ pattern: '^[^,:\\s]+:\\d{1,5}(,[^,:\\s]+:\\d{1,5})*$' }),
  /** PostgreSQL for accounts and events (later services). @defaultValue postgres://postgres@127.0.0.1:5432/bourse */
  DATABASE_URL: Url(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/bourse'),
  /** pino level. @defaultValue info */
  // An enum, not a union of literals: typebox stops reporting errors after a failed union,
  // which would hide the variables after a bad LOG_LEVEL.
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
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
  /** Where `bourse infra` keeps downloaded jars, data and logs. @defaultValue .bourse */
  BOURSE_HOME: Type.String({ minLength: 1 }),
})

/** Validated, frozen configuration. */
export type Config = Readonly<Static<typeof ConfigSchema>>

const defaults: Record<keyof Config, string> = {
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  KAFKA_BROKERS: '127.0.0.1:9092',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/bourse',
  LOG_LEVEL: 'info',
  MARKET_TOPIC: 'main_topic',
  MARKET_TOPIC_PARTITIONS: '3',
  PERFORMANCE_COST_MS: '3000',
  PERFORMANCE_INTERVAL_MS: '60000',
  PERFORMANCE_WORKERS: String(availableParallelism()),
  MATERIALIZE_INTERVAL_MS: '1000',
  BOURSE_HOME: '.bourse',
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
    raw[key] = value === undefined || value.trim() === '' ? defaults[key] : value.trim()
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
        problems.set(variable, `${error.message} (got ${JSON.stringify(raw[variable])})`)
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
