/** `bourse migrate`: creates or updates the PostgreSQL tables. */
import { migrations } from '../database.ts'
import { migrateToLatest } from '../platform/db/index.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'migrate',
  usage: '',
  description:
    'Applies every pending migration to DATABASE_URL, in DATABASE_SCHEMA (created if missing).\n' +
    'Safe to run again and from several processes at once. Services also migrate at start.',
  options: {},
  help: {},
} as const

export const { run } = defineService({
  spec,
  // Migrating is the whole command, so it is done here rather than by the platform.
  needs: () => ({ db: { max: 1, migrate: false } }),
  async start({ config, db }) {
    const applied = await migrateToLatest(db, config.DATABASE_SCHEMA, migrations)
    process.stdout.write(applied.length === 0 ? 'up to date\n' : `applied ${applied.length}: ${applied.join(', ')}\n`)
    return 0
  },
})
