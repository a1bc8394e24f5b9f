/** `bourse event-types`: list, show, set and delete the JSON Schemas events are validated against. */
import { readFileSync } from 'node:fs'
import { deleteEventType, findEventType, listEventTypes, upsertEventType } from '../events/event-types.repository.ts'
import { InvalidEventTypeError } from '../events/event-validation.ts'
import type { Db } from '../database.ts'
import type { EventTypeRow } from '../events/db/tables.ts'
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
  name: 'event-types',
  usage: 'list | show CATEGORY NAME | set CATEGORY NAME --schema FILE|JSON [--description D] | delete CATEGORY NAME',
  description:
    'Manages the event type registry of The Eye: the JSON Schema (draft-07) the `data` of each\n' +
    'type (category + name) must satisfy. Quote names with spaces: set "page interaction" pageview ...\n' +
    '  list                      every registered type\n' +
    '  show CATEGORY NAME        one type with its schema, as JSON\n' +
    '  set CATEGORY NAME         registers the type or replaces its schema (strict JSON Schema;\n' +
    '                            a schema Ajv refuses is not stored)\n' +
    '  delete CATEGORY NAME      removes the type (its events already stored stay)\n' +
    'Running workers pick changes up within a few seconds.',
  options: {
    schema: { type: 'string' },
    description: { type: 'string' },
  },
  help: {
    schema: 'set: the JSON Schema, inline JSON (starting with {) or a file path (- for stdin)',
    description: 'set: a note for people (kept when omitted)',
  },
  positionals: 'list | show CATEGORY NAME | set CATEGORY NAME | delete CATEGORY NAME',
} as const

type Action =
  | { kind: 'list' }
  | { kind: 'show' | 'delete'; category: string; name: string }
  | { kind: 'set'; category: string; name: string; schema: unknown; description: string | undefined }

/** Reads `--schema`: inline JSON, a file, or stdin. */
function readSchema(value: string): unknown {
  const inline = value.trimStart().startsWith('{')
  let text: string
  try {
    text = inline ? value : readFileSync(value === '-' ? 0 : value, 'utf8')
  } catch (err) {
    throw new UsageError(`--schema: cannot read ${quote(value)}: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new UsageError(`--schema${inline ? '' : ` (${value})`} is not JSON: ${(err as Error).message}`)
  }
}

/** Checks the arguments before anything connects. */
function parseAction({ values, positionals }: { values: { schema?: string; description?: string }; positionals: string[] }): Action {
  const [sub, category, name, ...extra] = positionals
  refuseExtraArguments(extra)
  refuseOptionsOutside(sub, values, { schema: 'set', description: 'set' })
  const typeOf = () => {
    if (category === undefined || name === undefined) throw new UsageError(`${sub} needs CATEGORY and NAME`)
    return { category, name }
  }
  switch (sub) {
    case 'list':
      if (category !== undefined) throw new UsageError('list takes no argument')
      return { kind: 'list' }
    case 'show':
    case 'delete':
      return { kind: sub, ...typeOf() }
    case 'set': {
      const type = typeOf()
      if (values.schema === undefined) throw new UsageError('set needs --schema FILE|JSON')
      return { kind: 'set', ...type, schema: readSchema(values.schema), description: values.description }
    }
    default:
      throw subcommandError('event-types', sub, ['list', 'show', 'set', 'delete'])
  }
}

/** The rows of `event-types list`, as aligned columns. */
function formatTypes(types: EventTypeRow[]): string {
  return formatTable(
    ['CATEGORY', 'NAME', 'UPDATED', 'DESCRIPTION'],
    types.map((t) => [t.category, t.name, t.updated_at.toISOString(), t.description ?? '-']),
  )
}

const typeJson = (t: EventTypeRow) =>
  JSON.stringify(
    { category: t.category, name: t.name, description: t.description, schema: t.schema, created_at: t.created_at, updated_at: t.updated_at },
    null,
    2,
  )

async function perform(db: Db, action: Action): Promise<number> {
  const label = (a: { category: string; name: string }) => `${quote(a.category)} ${quote(a.name)}`
  switch (action.kind) {
    case 'list':
      process.stdout.write(`${formatTypes(await listEventTypes(db))}\n`)
      return 0
    case 'show': {
      const type = await findEventType(db, action.category, action.name)
      if (!type) return commandFailed('event-types', `no event type ${label(action)}`)
      process.stdout.write(`${typeJson(type)}\n`)
      return 0
    }
    case 'set': {
      try {
        const { created } = await upsertEventType(db, action)
        process.stdout.write(`${created ? 'registered' : 'updated'} ${label(action)}\n`)
        return 0
      } catch (err) {
        if (!(err instanceof InvalidEventTypeError)) throw err
        return commandFailed('event-types', err.message)
      }
    }
    case 'delete': {
      if (!(await deleteEventType(db, action.category, action.name))) {
        return commandFailed('event-types', `no event type ${label(action)}`)
      }
      process.stdout.write(`deleted ${label(action)}\n`)
      return 0
    }
  }
}

export const { run } = defineDbCommand({ spec, parse: parseAction, perform })
