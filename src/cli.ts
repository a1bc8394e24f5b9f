/**
 * The only entry point: `bourse <command> [options]`. Each command lives in
 * `src/services/<name>.ts` and is loaded lazily, so `bourse --help` stays fast.
 */
import { commands, type CommandModule } from './services/commands.ts'

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return [
    'Usage: bourse <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `bourse <command> --help` for the options of one command.',
  ].join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`)
    return name === undefined ? 1 : 0
  }
  const command = commands.find((c) => c.name === name)
  if (!command) {
    process.stderr.write(`Unknown command: ${name}\n\n${usage()}\n`)
    return 2
  }
  const module = (await command.load()) as CommandModule
  return module.run(rest)
}

// A reader that went away (`bourse infra status | head -1`) is not an error of the command:
// what is left to print is dropped and the command ends as it would have.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
