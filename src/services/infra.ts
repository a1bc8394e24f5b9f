/**
 * `bourse infra up | down | status`: the local Kafka, Redis and PostgreSQL the other
 * commands and the tests need, on a machine without Docker. `up` uses what already
 * listens and starts the rest (Kafka from Maven Central jars, detached); `down` stops
 * only what `up` started.
 */
import { infraDown, infraStatus, infraUp } from '../platform/infra/local-infra.ts'
import { intOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'
import { quote } from '../platform/quote.ts'

const actions = ['up', 'down', 'status'] as const
type Action = (typeof actions)[number]

const spec = {
  name: 'infra',
  usage: '<up|down|status> [options]',
  description: [
    'up      start Kafka, Redis and PostgreSQL where nothing listens yet, create the market topic and database',
    'down    stop what `infra up` started (never a service it found running)',
    'status  one line per service: reachable, and whether bourse started it (exit 1 when one is not reachable)',
  ].join('\n'),
  options: {
    timeout: { type: 'string', default: '90' },
  },
  help: {
    timeout: 'Seconds `up` waits for a started service to accept connections',
  },
  positionals: '<up|down|status>',
} as const

const isAction = (value: string | undefined): value is Action => actions.includes(value as Action)

export const { run } = defineService({
  spec,
  parse: ({ values, positionals }) => {
    const [action, ...extra] = positionals
    if (!isAction(action) || extra.length > 0) {
      throw new UsageError(
        `Usage: bourse infra ${spec.usage}\nexpected one of ${actions.join(', ')} (got ${quote(positionals.join(' '))}); see --help`,
      )
    }
    return { action, timeoutMs: (intOption('timeout', values.timeout, 1, 3600) ?? 90) * 1000 }
  },
  async start({ config, log, lifecycle }, { action, timeoutMs }) {
    const deps = {
      config,
      log,
      signal: lifecycle.signal,
      print: (line: string) => process.stdout.write(`${line}\n`),
      printError: (text: string) => process.stderr.write(`${text}\n`),
    }
    const ok = action === 'up' ? await infraUp(deps, { timeoutMs }) : action === 'down' ? await infraDown(deps) : await infraStatus(deps)
    return ok ? 0 : 1
  },
})
