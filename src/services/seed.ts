/** `bourse seed FILE`: loads a fixture of Redis `SET key 'json'` lines. */
import { readRedisFixture } from '../market/redis-fixture.ts'
import { createStockHistoryRepository } from '../market/stock-history.repository.ts'
import { createAccounts, projectUser, resetAccountCredit } from '../trading/index.ts'
import { UsageError } from '../platform/command.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'seed',
  usage: 'FILE',
  description:
    "Loads a fixture of lines `SET key 'json'` (stocks and users, the form of redis_data.txt).\n" +
    "A stock's history becomes exactly the fixture's entries; later ticks are appended after them.\n" +
    "Users become accounts in PostgreSQL with the fixture's credit (an existing account keeps its\n" +
    'credit and holdings, and says so, unless --reset-accounts), and their Redis keys are projected from there.\n' +
    'Every value is stored as written. Nothing is written when any line is malformed (a negative price, a credit or id\n' +
    "an account cannot hold). A key holding another program's value is moved to bourse:quarantine:<key>, not overwritten.",
  options: { 'reset-accounts': { type: 'boolean', default: false } },
  help: { 'reset-accounts': "Set existing accounts' credit to the fixture's (holdings stay), for a clean demo" },
  positionals: 'FILE',
} as const

export const { run } = defineService({
  spec,
  parse: async ({ values, positionals }) => {
    const [file, ...extra] = positionals
    if (!file || extra.length > 0) throw new UsageError('seed takes exactly one FILE')
    const fixture = await readRedisFixture(file).catch((err: Error) => {
      throw new UsageError(`cannot read ${file}: ${err.message}`)
    })
    // Exit 1, not 2: the command line was right, the file is not.
    if (fixture.errors.length > 0) throw new Error(`${file}: nothing loaded:\n${fixture.errors.map((e) => `  ${e}`).join('\n')}`)
    return { file, fixture, resetAccounts: values['reset-accounts'] }
  },
  needs: () => ({ redis: {}, db: { max: 2 } }),
  async start({ config, lifecycle, redis, db }, { file, fixture, resetAccounts }) {
    const history = createStockHistoryRepository(redis, { materializeIntervalMs: config.MATERIALIZE_INTERVAL_MS })
    let stocks = 0
    let users = 0
    let created = 0
    let reset = 0
    const quarantined = (key: string, movedTo: string) =>
      process.stderr.write(`${key}: held a value that is not Bourse's; it was moved to ${movedTo}, not overwritten\n`)
    const load = async () => {
      const accounts = fixture.entries.flatMap((e) =>
        e.kind === 'user' ? [{ id: e.key, credit: e.credit, contractId: e.value.id }] : [],
      )
      const createdIds = new Set((await createAccounts(db, accounts)).map((row) => row.id))
      created = createdIds.size
      const existing = accounts.filter((a) => !createdIds.has(a.id))
      if (resetAccounts) reset = (await resetAccountCredit(db, existing)).length
      for (const entry of fixture.entries) {
        if (lifecycle.signal.aborted) return
        if (entry.kind === 'stock') {
          // The fixture's text, so that every value is stored as written.
          const movedTo = await history.seedStock(entry.key, entry.json)
          if (movedTo !== undefined) quarantined(entry.key, movedTo)
          stocks++
        }
      }
      // The Redis keys of users are a projection of their accounts, new or existing.
      const rows = await db.selectFrom('users').selectAll().where('id', 'in', accounts.length > 0 ? accounts.map((a) => a.id) : ['']).execute()
      for (const row of rows) await projectUser(redis, row, { onQuarantine: quarantined })
      users = rows.length
      if (resetAccounts) return
      const credit = new Map(rows.map((row) => [row.id, row.credit]))
      for (const account of existing) {
        process.stderr.write(
          `${account.id}: the account exists, so the fixture's credit ${account.credit} was not applied; ` +
            `its credit ${credit.get(account.id) ?? '?'} is kept (--reset-accounts applies the fixture's)\n`,
        )
      }
    }
    // Registered after Redis, so a shutdown lets the entry being written finish first.
    const loading = load()
    lifecycle.onClose('load', () => loading.catch(() => {}))
    await loading
    const resetText = resetAccounts ? `, ${reset} reset to the fixture's credit` : ''
    process.stdout.write(`${file}: loaded ${stocks} stocks and ${users} users (${created} new accounts${resetText})\n`)
    return 0
  },
})
