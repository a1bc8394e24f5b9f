/** `bourse apps`: register, list and revoke the applications trusted to send events. */
import { appNameProblem, type AppSummary, createApp, listApps, revokeApp } from '../events/apps.repository.ts'
import type { Db } from '../database.ts'
import { Conflict } from '../platform/http/errors.ts'
import { UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

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
function parseAction(positionals: string[]): Action {
  const [sub, arg, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
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
    case undefined:
      throw new UsageError('apps needs a subcommand: create, list or revoke')
    default:
      throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}: use create, list or revoke`)
  }
}

/** The rows of `apps list`, as aligned columns. */
function formatApps(apps: AppSummary[]): string {
  const rows = [
    ['ID', 'NAME', 'CREATED', 'REVOKED'],
    ...apps.map((a) => [a.id, a.name, a.created_at.toISOString(), a.revoked_at ? a.revoked_at.toISOString() : '-']),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

async function perform(db: Db, action: Action): Promise<number> {
  switch (action.kind) {
    case 'create': {
      let created
      try {
        created = await createApp(db, action.name)
      } catch (err) {
        if (err instanceof Conflict) {
          process.stderr.write(`bourse apps: ${err.message}; pick another name, or revoke it and use another\n`)
          return 1
        }
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
        process.stderr.write(`bourse apps: no application with id or name ${JSON.stringify(action.idOrName)}\n`)
        return 1
      }
      const what = `${JSON.stringify(result.app.name)} (${result.app.id})`
      process.stdout.write(result.status === 'revoked' ? `revoked ${what}\n` : `${what} was already revoked\n`)
      return 0
    }
  }
}

export const { run } = defineService({
  spec,
  parse: ({ positionals }) => parseAction(positionals),
  needs: () => ({ db: { max: 1 } }),
  start: ({ db }, action) => perform(db, action),
})
