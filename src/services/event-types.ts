/** `bourse event-types`: list, show, set and delete the JSON Schemas events are validated against. */
import { readFileSync } from 'node:fs'
import { deleteEventType, findEventType, listEventTypes, upsertEventType } from '../events/event-types.repository.ts'
import { InvalidEventTypeError } from '../events/event-validation.ts'
import type { Db } from '../database.ts'
import type { EventTypeRow } from '../events/db/tables.ts'
import { UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

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
    throw new UsageError(`--schema: cannot read ${JSON.stringify(value)}: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new UsageError(`--schema${inline ? '' : ` (${value})`} is not JSON: ${(err as Error).message}`)
  }
}

/** Checks the arguments before anything connects. */
function parseAction(values: { schema?: string; description?: string }, positionals: string[]): Action {
  const [sub, category, name, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  if (sub !== 'set' && values.schema !== undefined) throw new UsageError('--schema only goes with set')
  if (sub !== 'set' && values.description !== undefined) throw new UsageError('--description only goes with set')
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
    case undefined:
      throw new UsageError('event-types needs a subcommand: list, show, set or delete')
    default:
      throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}: use list, show, set or delete`)
  }
}

/** The rows of `event-types list`, as aligned columns. */
function formatTypes(types: EventTypeRow[]): string {
  const rows = [
    ['CATEGORY', 'NAME', 'UPDATED', 'DESCRIPTION'],
    ...types.map((t) => [t.category, t.name, t.updated_at.toISOString(), t.description ?? '-']),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

const typeJson = (t: EventTypeRow) =>
  JSON.stringify(
    { category: t.category, name: t.name, description: t.description, schema: t.schema, created_at: t.created_at, updated_at: t.updated_at },
    null,
    2,
  )

async function perform(db: Db, action: Action): Promise<number> {
  const label = (a: { category: string; name: string }) => `${JSON.stringify(a.category)} ${JSON.stringify(a.name)}`
  switch (action.kind) {
    case 'list':
      process.stdout.write(`${formatTypes(await listEventTypes(db))}\n`)
      return 0
    case 'show': {
      const type = await findEventType(db, action.category, action.name)
      if (!type) {
        process.stderr.write(`bourse event-types: no event type ${label(action)}\n`)
        return 1
      }
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
        process.stderr.write(`bourse event-types: ${err.message}\n`)
        return 1
      }
    }
    case 'delete': {
      if (!(await deleteEventType(db, action.category, action.name))) {
        process.stderr.write(`bourse event-types: no event type ${label(action)}\n`)
        return 1
      }
      process.stdout.write(`deleted ${label(action)}\n`)
      return 0
    }
  }
}

export const { run } = defineService({
  spec,
  parse: ({ values, positionals }) => parseAction(values, positionals),
  needs: () => ({ db: { max: 1 } }),
  start: ({ db }, action) => perform(db, action),
})
