/**
 * Command-line arguments of a `bourse` command: its spec (options with one help line
 * each), `--help`, and the errors that turn into exit code 2 with the usage.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'
import { quote } from './quote.ts'

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
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max} (got ${quote(value)})`)
  }
  return n
}

/** Reads a decimal option within bounds (above `min` when `minExclusive`), naming it when it is not one. */
export function numberOption(name: string, value: string | undefined, min: number, max: number, minExclusive = false): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n > max || (minExclusive ? n <= min : n < min)) {
    const range = minExclusive ? `greater than ${min} and at most ${max}` : `from ${min} to ${max}`
    throw new UsageError(`--${name} must be a number ${range} (got ${quote(value)})`)
  }
  return n
}

/** Refuses the positionals left after a subcommand's own arguments. */
export function refuseExtraArguments(extra: readonly string[]): void {
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
}

/**
 * Refuses options given with a subcommand they do not go with: `where` maps an option to
 * its subcommand (`{ label: 'create' }` gives `--label only goes with create`).
 */
export function refuseOptionsOutside<V extends object>(sub: string | undefined, values: V, where: { [K in keyof V]?: string }): void {
  for (const [option, home] of Object.entries(where) as Array<[keyof V & string, string | undefined]>) {
    if (sub !== home && values[option] !== undefined) throw new UsageError(`--${option} only goes with ${home}`)
  }
}

/** The error for a missing or unknown subcommand, naming the ones there are. */
export function subcommandError(command: string, sub: string | undefined, subcommands: readonly string[]): UsageError {
  const choices = `${subcommands.slice(0, -1).join(', ')} or ${subcommands.at(-1)}`
  return new UsageError(
    sub === undefined ? `${command} needs a subcommand: ${choices}` : `unknown subcommand ${quote(sub)}: use ${choices}`,
  )
}

/** Ends a command with exit code 1, saying why on stderr as `bourse <command>: <message>`. */
export function commandFailed(command: string, message: string): 1 {
  process.stderr.write(`bourse ${command}: ${message}\n`)
  return 1
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
