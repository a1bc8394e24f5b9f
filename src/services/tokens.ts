/** `bourse tokens`: create, list and revoke API tokens. */
import {
  type ApiTokenSummary,
  createApiToken,
  listApiTokens,
  revokeApiToken,
} from '../auth/index.ts'
import type { Db } from '../database.ts'
import { NotFound } from '../platform/http/errors.ts'
import {
  commandFailed,
  refuseExtraArguments,
  refuseOptionsOutside,
  subcommandError,
  UsageError,
} from '../platform/command.ts'
import { formatTable } from '../platform/text-table.ts'
import { defineDbCommand } from './shape.ts'
import { quote } from '../platform/quote.ts'

const spec = {
  name: 'tokens',
  usage: 'create USER [--label L] | create --admin [--label L] | list [--user U] | revoke ID',
  description:
    'Manages the bearer tokens of the HTTP API.\n' +
    '  create USER     a token acting for USER (a user in the accounts table)\n' +
    '  create --admin  a token that may act for every user\n' +
    '  list            every token (never the secrets, which are not stored)\n' +
    '  revoke ID       refuses the token from now on (running APIs within AUTH_CACHE_MS)\n' +
    'A created token is printed once, alone on stdout; only its SHA-256 is stored.',
  options: {
    admin: { type: 'boolean' },
    label: { type: 'string' },
    user: { type: 'string' },
  },
  help: {
    admin: 'create: an admin token instead of a user token',
    label: 'create: a note to recognise the token by (who or what uses it)',
    user: 'list: only the tokens of this user',
  },
  positionals: 'create USER | create --admin | list | revoke ID',
} as const

type Action =
  | { kind: 'create'; owner: { userId: string } | { admin: true }; label: string | undefined }
  | { kind: 'list'; userId: string | undefined }
  | { kind: 'revoke'; id: string }

/** Checks the arguments before anything connects. */
function parseAction({ values, positionals }: { values: { admin?: boolean; label?: string; user?: string }; positionals: string[] }): Action {
  const [sub, arg, ...extra] = positionals
  refuseExtraArguments(extra)
  refuseOptionsOutside(sub, values, { admin: 'create', label: 'create', user: 'list' })
  switch (sub) {
    case 'create': {
      if (values.label !== undefined && (values.label.trim() === '' || values.label.length > 200)) {
        throw new UsageError('--label must be 1 to 200 characters')
      }
      if (values.admin) {
        if (arg !== undefined) throw new UsageError('create --admin takes no USER')
        return { kind: 'create', owner: { admin: true }, label: values.label }
      }
      if (arg === undefined || arg === '') throw new UsageError('create needs a USER (or --admin)')
      return { kind: 'create', owner: { userId: arg }, label: values.label }
    }
    case 'list':
      if (arg !== undefined) throw new UsageError('list takes no argument (use --user U)')
      return { kind: 'list', userId: values.user }
    case 'revoke':
      if (arg === undefined) throw new UsageError('revoke needs a token ID (see `bourse tokens list`)')
      return { kind: 'revoke', id: arg }
    default:
      throw subcommandError('tokens', sub, ['create', 'list', 'revoke'])
  }
}

/** The rows of `tokens list`, as aligned columns. */
function formatTokens(tokens: ApiTokenSummary[]): string {
  return formatTable(
    ['ID', 'OWNER', 'LABEL', 'CREATED', 'REVOKED'],
    tokens.map((t) => [
      t.id,
      t.admin ? 'admin' : `user ${t.user_id ?? ''}`,
      t.label ?? '-',
      t.created_at.toISOString(),
      t.revoked_at ? t.revoked_at.toISOString() : '-',
    ]),
  )
}

async function perform(db: Db, action: Action): Promise<number> {
  switch (action.kind) {
    case 'create': {
      let created
      try {
        created = await createApiToken(db, action.owner, action.label)
      } catch (err) {
        if (err instanceof NotFound) return commandFailed('tokens', `${err.message}; create the user first`)
        throw err
      }
      const owner = 'userId' in action.owner ? `user ${action.owner.userId}` : 'admin'
      process.stdout.write(`${created.token}\n`)
      // The id comes with its name: printed bare before the token, it read as if it were the token.
      process.stderr.write(`created a token for ${owner} (token id ${created.id}, for \`bourse tokens revoke\`); the token is on stdout, shown only now: store it safely\n`)
      return 0
    }
    case 'list': {
      const tokens = await listApiTokens(db, { userId: action.userId })
      process.stdout.write(`${formatTokens(tokens)}\n`)
      return 0
    }
    case 'revoke': {
      const result = await revokeApiToken(db, action.id)
      if (result === 'not_found') return commandFailed('tokens', `no token with id ${quote(action.id)}`)
      process.stdout.write(result === 'revoked' ? `revoked ${action.id}\n` : `${action.id} was already revoked\n`)
      return 0
    }
  }
}

export const { run } = defineDbCommand({ spec, parse: parseAction, perform })
