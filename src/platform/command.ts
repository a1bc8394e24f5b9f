/**
 * Command-line arguments of a `bourse` command: its spec (options with one help line
 * each), `--help`, and the errors that turn into exit code 2 with the usage.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'

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

/** A command line as {@link parseCommand} returns it. */
export type ParsedCommand<O extends ParseArgsOptionsConfig> = NonNullable<ReturnType<typeof parseCommand<O>>>

/** Reads an integer option, naming it when it is not one. */
export function intOption(name: string, value: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^-?\d+$/.test(value) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`)
  }
  return n
}

/** Reads a decimal option within bounds (above `min` when `minExclusive`), naming it when it is not one. */
export function numberOption(name: string, value: string | undefined, min: number, max: number, minExclusive = false): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n > max || (minExclusive ? n <= min : n < min)) {
    const range = minExclusive ? `greater than ${min} and at most ${max}` : `from ${min} to ${max}`
    throw new UsageError(`--${name} must be a number ${range} (got ${JSON.stringify(value)})`)
  }
  return n
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
