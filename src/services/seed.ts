/** `bourse seed FILE`: loads a fixture of Redis `SET key 'json'` lines. */
import { readRedisFixture } from '../market/redis-fixture.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { closeDb, createDb, migrateToLatest } from '../platform/db/index.ts'
import { closeRedis, createRedis } from '../platform/redis.ts'
import { createAccounts, projectUser } from '../trading/index.ts'
import { createServiceContext, parseCommand, runCommand, UsageError } from './context.ts'

const spec = {
  name: 'seed',
  usage: 'FILE',
  description:
    "Loads a fixture of lines `SET key 'json'` (stocks and users, the form of redis_data.txt).\n" +
    "A stock's history becomes exactly the fixture's entries; later ticks are appended after them.\n" +
    "Users become accounts in PostgreSQL with the fixture's credit (an existing account keeps its\n" +
    'credit and holdings), and their Redis keys are projected from there.\n' +
    'Nothing is written when any line is malformed.',
  options: {},
  help: {},
  positionals: 'FILE',
} as const

export function run(argv: string[]): Promise<number> {
  return runCommand(async () => {
    const args = parseCommand(spec, argv)
    if (!args) return 0
    const [file, ...extra] = args.positionals
    if (!file || extra.length > 0) throw new UsageError('seed takes exactly one FILE')
    const fixture = await readRedisFixture(file).catch((err: Error) => {
      throw new UsageError(`cannot read ${file}: ${err.message}`)
    })
    if (fixture.errors.length > 0) {
      process.stderr.write(`${file}: nothing loaded:\n${fixture.errors.map((e) => `  ${e}`).join('\n')}\n`)
      return 1
    }
    const { config, log, lifecycle } = createServiceContext('seed')
    const redis = createRedis(config.REDIS_URL, log, 'seed')
    lifecycle.onClose('redis', () => closeRedis(redis))
    const db = createDb({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA, max: 2, log })
    lifecycle.onClose('postgres', () => closeDb(db))
    const history = createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS })
    let stocks = 0
    let users = 0
    let created = 0
    const load = async () => {
      await migrateToLatest(db, config.DATABASE_SCHEMA)
      const accounts = fixture.entries.flatMap((e) =>
        e.kind === 'user' ? [{ id: e.key, credit: e.value.credit, contractId: e.value.id }] : [],
      )
      created = (await createAccounts(db, accounts)).length
      for (const entry of fixture.entries) {
        if (lifecycle.signal.aborted) return
        if (entry.kind === 'stock') {
          await history.seedStock(entry.key, entry.value)
          stocks++
        }
      }
      // The Redis keys of users are a projection of their accounts, new or existing.
      const rows = await db.selectFrom('users').selectAll().where('id', 'in', accounts.length > 0 ? accounts.map((a) => a.id) : ['']).execute()
      for (const row of rows) await projectUser(redis, row)
      users = rows.length
    }
    // Registered after Redis, so a shutdown lets the entry being written finish first.
    const loading = load()
    lifecycle.onClose('load', () => loading.catch(() => {}))
    try {
      await loading
      process.stdout.write(`${file}: loaded ${stocks} stocks and ${users} users (${created} new accounts)\n`)
      return 0
    } finally {
      await lifecycle.shutdown('done')
    }
  })
}
