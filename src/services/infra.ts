/**
 * `bourse infra up | down | status | reset`: the local Kafka, Redis and PostgreSQL the
 * other commands and the tests need, on a machine without Docker. `up` uses what already
 * listens and starts the rest (Kafka from Maven Central jars, detached), keeping the data
 * of earlier runs; `down` stops only what `up` started; `reset` deletes that data.
 */
import { infraDown, infraReset, infraStatus, infraUp } from '../platform/infra/local-infra.ts'
import { intOption, UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'
import { quote } from '../platform/quote.ts'

const actions = ['up', 'down', 'status', 'reset'] as const
type Action = (typeof actions)[number]

const spec = {
  name: 'infra',
  usage: '<up|down|status|reset> [options]',
  description: [
    'up      start Kafka, Redis and PostgreSQL where nothing listens yet, create the market topic and database;',
    '        a broker or redis-server started again keeps its data (topics, messages, group offsets)',
    'down    stop what `infra up` started (never a service it found running)',
    'status  one line per service: reachable, and whether bourse started it (exit 1 when one is not reachable)',
    'reset   stop what `infra up` started and DELETE its data under BOURSE_HOME: the Kafka broker\'s topics,',
    '        messages and consumer group offsets, and the data of the redis-server it started; prints each',
    '        path deleted. PostgreSQL and services bourse did not start are left alone',
  ].join('\n'),
  options: {
    timeout: { type: 'string', default: '90' },
  },
  help: {
    timeout: 'Seconds `up` waits for a started service to accept connections',
  },
  positionals: '<up|down|status|reset>',
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
    const run = {
      up: () => infraUp(deps, { timeoutMs }),
      down: () => infraDown(deps),
      status: () => infraStatus(deps),
      reset: () => infraReset(deps),
    }[action]
    return (await run()) ? 0 : 1
  },
})
