/** `bourse rebuild-projections`: rewrites the Redis `userN` keys from PostgreSQL. */
import { rebuildUserProjections } from '../trading/index.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'rebuild-projections',
  usage: '[--force]',
  description:
    'Rewrites the Redis key of every account (`user1`: `{"id": 1, "credit": ...}`) from PostgreSQL,\n' +
    'the source of truth. A newer projection written by a concurrent trade is kept.',
  options: { force: { type: 'boolean', default: false } },
  help: { force: 'Overwrite even newer projections (after restoring an older database)' },
} as const

export const { run } = defineService({
  spec,
  needs: () => ({ db: { max: 2, migrate: false }, redis: {} }),
  async start({ db, redis }, { values }) {
    const count = await rebuildUserProjections(db, redis, { force: values.force })
    process.stdout.write(`rebuilt ${count} user projections\n`)
    return 0
  },
})
