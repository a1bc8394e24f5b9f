/**
 * What every runnable service starts from: validated config, the logger and the
 * process lifecycle, plus argument parsing with `--help` for each command.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { type Config, ConfigError, loadConfig } from '../platform/config.ts'
import { createLifecycle, type Lifecycle } from '../platform/lifecycle.ts'
import { createLogger, type Logger } from '../platform/logger.ts'

/** The dependencies a service builds at start and hands down. */
export interface ServiceContext {
  config: Config
  log: Logger
  lifecycle: Lifecycle
}

/** Thrown for bad command-line arguments; the CLI prints it with the command's usage. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** Describes a command for {@link parseCommand}. */
export interface CommandSpec<O extends ParseArgsOptionsConfig> {
  name: string
  usage: string
  description: string
  options: O
  /** One line per option, shown by `--help`. */
  help: Partial<Record<keyof O, string>>
  positionals?: string
}

function helpText<O extends ParseArgsOptionsConfig>(spec: CommandSpec<O>): string {
  const lines = [`Usage: bourse ${spec.name} ${spec.usage}`.trimEnd(), '', spec.description, '', 'Options:']
  const entries = Object.entries(spec.options).map(([key, option]) => {
    const flag = `--${key}${option.type === 'string' ? ' <value>' : ''}`
    const dflt = option.default !== undefined ? ` (default: ${String(option.default)})` : ''
    return [flag, `${spec.help[key as keyof O] ?? ''}${dflt}`] as const
  })
  entries.push(['--help', 'Show this help'])
  const width = Math.max(...entries.map(([flag]) => flag.length))
  for (const [flag, text] of entries) lines.push(`  ${flag.padEnd(width)}  ${text}`)
  return lines.join('\n')
}

/**
 * Parses a command's arguments. Returns undefined after printing help for `--help`;
 * throws {@link UsageError} (with the usage) for unknown or malformed options.
 */
export function parseCommand<O extends ParseArgsOptionsConfig>(spec: CommandSpec<O>, argv: string[]) {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${helpText(spec)}\n`)
    return undefined
  }
  try {
    return parseArgs({ args: argv, options: spec.options, allowPositionals: spec.positionals !== undefined, strict: true })
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${helpText(spec)}`)
  }
}

/** Reads an integer option, naming it when it is not one. */
export function intOption(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^-?\d+$/.test(value) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`)
  }
  return n
}

/**
 * Builds the service context. A bad environment prints the problems and exits the
 * process with code 78 (configuration error) before anything connects.
 */
export function createServiceContext(service: string, env: NodeJS.ProcessEnv = process.env): ServiceContext {
  let config: Config
  try {
    config = loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`bourse ${service}: ${err.message}\n`)
      process.exit(78)
    }
    throw err
  }
  const log = createLogger({ level: config.LOG_LEVEL }).child({ service })
  const lifecycle = createLifecycle(log)
  lifecycle.onClose('logger', () => log.flush())
  return { config, log, lifecycle }
}

/** Runs a command body, turning {@link UsageError} into exit code 2 with the message. */
export async function runCommand(body: () => Promise<number>): Promise<number> {
  try {
    return await body()
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`)
      return 2
    }
    throw err
  }
}
