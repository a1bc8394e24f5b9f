/** `bourse migrate`: creates or updates the PostgreSQL tables. */
import { closeDb, createDb, migrateToLatest } from '../platform/db/index.ts'
import { createServiceContext, parseCommand, runCommand } from './context.ts'

const spec = {
  name: 'migrate',
  usage: '',
  description:
    'Applies every pending migration to DATABASE_URL, in DATABASE_SCHEMA (created if missing).\n' +
    'Safe to run again and from several processes at once. Services also migrate at start.',
  options: {},
  help: {},
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    if (!parseCommand(spec, argv)) return 0
    const { config, log, lifecycle } = createServiceContext('migrate')
    const db = createDb({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, max: 1, log })
    lifecycle.onClose('postgres', () => closeDb(db))
    try {
      const applied = await migrateToLatest(db, config.DATABASE_SCHEMA)
      process.stdout.write(
        applied.length === 0 ? 'up to date\n' : `applied ${applied.length}: ${applied.join(', ')}\n`,
      )
      return 0
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
