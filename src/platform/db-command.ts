/**
 * A command that performs one action on the database (`bourse tokens`, `apps`,
 * `event-types`): it reads its arguments into the action before anything connects, then
 * performs it over a single connection and exits with the code the action returns.
 */
import type { ParseArgsOptionsConfig } from 'node:util'
import type { CommandSpec, ParsedCommand } from './command.ts'
import type { Db } from './db/index.ts'
import { defineService } from './service.ts'

/** What {@link defineDbCommand} needs. */
export interface DbCommandDefinition<O extends ParseArgsOptionsConfig, A> {
  /** The command line: name, usage, description, options and their help. */
  spec: CommandSpec<O>
  /** Reads the command line into the action to perform; throws UsageError for bad arguments. */
  parse: (args: ParsedCommand<O>) => A
  /** Performs the action; resolves to the exit code. */
  perform: (db: Db, action: A) => Promise<number>
}

/** Defines a command that performs one action on the database: `export const { run } = defineDbCommand({ ... })`. */
export function defineDbCommand<O extends ParseArgsOptionsConfig, A>({ spec, parse, perform }: DbCommandDefinition<O, A>) {
  return defineService({ spec, parse, needs: () => ({ db: { max: 1 } }), start: ({ db }, action) => perform(db, action) })
}
