/** `bourse rebuild-projections`: rewrites the Redis `userN` keys from PostgreSQL. */
import { closeDb, createDb } from '../platform/db/index.ts'
import { closeRedis, createRedis } from '../platform/redis.ts'
import { rebuildUserProjections } from '../trading/index.ts'
import { createServiceContext, parseCommand, runCommand } from './context.ts'

const spec = {
  name: 'rebuild-projections',
  usage: '[--force]',
  description:
    'Rewrites the Redis key of every account (`user1`: `{"id": 1, "credit": ...}`) from PostgreSQL,\n' +
    'the source of truth. A newer projection written by a concurrent trade is kept.',
  options: { force: { type: 'boolean', default: false } },
  help: { force: 'Overwrite even newer projections (after restoring an older database)' },
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const { config, log, lifecycle } = createServiceContext('rebuild-projections')
    const db = createDb({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, max: 2, log })
    lifecycle.onClose('postgres', () => closeDb(db))
    const redis = createRedis(config.REDIS_URL, log, 'rebuild-projections')
    lifecycle.onClose('redis', () => closeRedis(redis))
    try {
      const count = await rebuildUserProjections(db, redis, { force: args.values.force })
      process.stdout.write(`rebuilt ${count} user projections\n`)
      return 0
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
