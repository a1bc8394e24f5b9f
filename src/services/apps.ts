/** `bourse apps`: register, list and revoke the applications trusted to send events. */
import { appNameProblem, type AppSummary, createApp, listApps, revokeApp } from '../events/apps.repository.ts'
import type { Db } from '../database.ts'
import { Conflict } from '../platform/http/errors.ts'
import { commandFailed, refuseExtraArguments, subcommandError, UsageError } from '../platform/command.ts'
import { formatTable } from '../platform/text-table.ts'
import { defineDbCommand } from './shape.ts'
import { quote } from '../platform/quote.ts'

const spec = {
  name: 'apps',
  usage: 'create NAME | list | revoke ID|NAME',
  description:
    'Manages the applications trusted to send events to POST /api/events (The Eye).\n' +
    '  create NAME      registers an application and prints its bearer token\n' +
    '  list             every application (never the tokens, which are not stored)\n' +
    '  revoke ID|NAME   refuses its token from now on (running APIs within AUTH_CACHE_MS)\n' +
    'A created token is printed once, alone on stdout; only its SHA-256 is stored.',
  options: {},
  help: {},
  positionals: 'create NAME | list | revoke ID|NAME',
} as const

type Action = { kind: 'create'; name: string } | { kind: 'list' } | { kind: 'revoke'; idOrName: string }

/** Checks the arguments before anything connects. */
function parseAction({ positionals }: { positionals: string[] }): Action {
  const [sub, arg, ...extra] = positionals
  refuseExtraArguments(extra)
  switch (sub) {
    case 'create': {
      if (arg === undefined) throw new UsageError('create needs a NAME')
      const problem = appNameProblem(arg)
      if (problem !== undefined) throw new UsageError(`NAME ${problem}`)
      return { kind: 'create', name: arg }
    }
    case 'list':
      if (arg !== undefined) throw new UsageError('list takes no argument')
      return { kind: 'list' }
    case 'revoke':
      if (arg === undefined || arg === '') throw new UsageError('revoke needs an application ID or NAME (see `bourse apps list`)')
      return { kind: 'revoke', idOrName: arg }
    default:
      throw subcommandError('apps', sub, ['create', 'list', 'revoke'])
  }
}

/** The rows of `apps list`, as aligned columns. */
function formatApps(apps: AppSummary[]): string {
  return formatTable(
    ['ID', 'NAME', 'CREATED', 'REVOKED'],
    apps.map((a) => [a.id, a.name, a.created_at.toISOString(), a.revoked_at ? a.revoked_at.toISOString() : '-']),
  )
}

async function perform(db: Db, action: Action): Promise<number> {
  switch (action.kind) {
    case 'create': {
      let created
      try {
        created = await createApp(db, action.name)
      } catch (err) {
        if (err instanceof Conflict) return commandFailed('apps', `${err.message}; pick another name, or revoke it and use another`)
        throw err
      }
      process.stdout.write(`${created.token}\n`)
      process.stderr.write(
        `created application ${JSON.stringify(created.name)} (application id ${created.id}); its token is on stdout, shown only now: store it safely\n`,
      )
      return 0
    }
    case 'list': {
      process.stdout.write(`${formatApps(await listApps(db))}\n`)
      return 0
    }
    case 'revoke': {
      const result = await revokeApp(db, action.idOrName)
      if (result.status === 'not_found') {
        return commandFailed('apps', `no application with id or name ${quote(action.idOrName)}`)
      }
      const what = `${quote(result.app.name)} (${result.app.id})`
      process.stdout.write(result.status === 'revoked' ? `revoked ${what}\n` : `${what} was already revoked\n`)
      return 0
    }
  }
}

export const { run } = defineDbCommand({ spec, parse: parseAction, perform })
