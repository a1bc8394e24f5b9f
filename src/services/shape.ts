/**
 * The services' `defineService`: `ctx.db` is typed with every table, and every migration
 * is applied. And `defineDbCommand`, for the commands that perform one action on the
 * database (`bourse tokens`, `apps`, `event-types`).
 */
import type { ParseArgsOptionsConfig } from 'node:util'
import { type Database, type Db, migrations } from '../database.ts'
import type { CommandSpec, ParsedCommand } from '../platform/command.ts'
import { createServiceShape } from '../platform/service.ts'

export const defineService = createServiceShape<Database>({ migrations })

/** What {@link defineDbCommand} needs. */
export interface DbCommandDefinition<O extends ParseArgsOptionsConfig, A> {
  /** The command line: name, usage, description, options and their help. */
  spec: CommandSpec<O>
  /** Reads the command line into the action to perform; throws UsageError for bad arguments. */
  parse: (args: ParsedCommand<O>) => A
  /** Performs the action; resolves to the exit code. */
  perform: (db: Db, action: A) => Promise<number>
}

/**
 * A command that reads its arguments into an action before anything connects, then
 * performs it over a single connection and exits with the code the action returns.
 */
export function defineDbCommand<O extends ParseArgsOptionsConfig, A>({ spec, parse, perform }: DbCommandDefinition<O, A>) {
  return defineService({ spec, parse, needs: () => ({ db: { max: 1 } }), start: ({ db }, action) => perform(db, action) })
}
