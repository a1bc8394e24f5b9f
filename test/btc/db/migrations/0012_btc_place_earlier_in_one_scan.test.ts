/**
 * Migration 0012: the placing function of 0011 under the same name, its keyed orders looked
 * up by one statement; the same decisions, and down puts 0011's body back.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import * as earlierInOneScan from '../../../../src/btc/db/migrations/0012_btc_place_earlier_in_one_scan.ts'
import { createAccounts } from '../../../../src/trading/index.ts'
import { openTestDb, type TestDb } from '../../../helpers/db.ts'

let t: TestDb

before(async () => {
  t = await openTestDb()
  await createAccounts(t.db, [{ id: 'u1', credit: 0 }])
})
after(() => t.close())

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`

/** One order of a batch, as the repository sends it: keyed when `key` is given. */
const entry = (n: number, btc: string, key: string | null = null) => [id(n), 'u1', 'EUR', '10.00', '50000.00', btc, 'coinbase', '2026-12-07T10:00:00.123Z', key, key && 'h']

/** The outcome and the id of an earlier order, per order of the batch, against a cap of 1 BTC. */
async function place(entries: unknown[]): Promise<Array<[string, string | null]>> {
  const { rows } = await sql<{ outcome: string; id: string | null }>`
    select outcome, id from bourse_place_btc_orders_v2(${JSON.stringify(entries)}::jsonb, 1::numeric)
  `.execute(t.db)
  return rows.map((r) => [r.outcome, r.id])
}

/** The installed function's body. */
const body = async () =>
  (
    await sql<{ src: string }>`
      select p.prosrc as src from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = ${t.schema} and p.proname = 'bourse_place_btc_orders_v2'
    `.execute(t.db)
  ).rows.map((r) => r.src)

/** Empties the orders and the total. */
const reset = async () => {
  await sql`delete from btc_orders`.execute(t.db)
  await sql`update btc_totals set btc_total = 0`.execute(t.db)
}

/** Places a keyed order, then a batch with its retry (taking no room), a new keyed order, an unkeyed one and one over the cap. */
async function decisions(): Promise<Array<[string, string | null]>> {
  await reset()
  assert.deepEqual(await place([entry(1, '0.50000000', 'a')]), [['placed', null]])
  return place([entry(2, '0.30000000', 'b'), entry(1, '0.50000000', 'a'), entry(3, '0.20000000'), entry(4, '0.00000001', 'c')])
}

const expected: Array<[string, string | null]> = [
  ['placed', null],
  ['earlier', id(1)],
  ['placed', null],
  ['refused', null],
]

test('the function looks the keyed orders up in one statement and decides as 0011 did', async () => {
  const [src] = await body()
  assert.match(src!, /into earliers/)
  assert.doesNotMatch(src!, /into earlier from/)
  assert.deepEqual(await decisions(), expected)
})

test('migration 0012 goes down to 0011\'s body, deciding the same, and up again', async () => {
  await earlierInOneScan.down(t.db as never)
  const [older] = await body()
  assert.match(older!, /select x\.id into earlier from btc_orders/)
  assert.deepEqual(await decisions(), expected)
  await earlierInOneScan.up(t.db as never)
  assert.match((await body())[0]!, /into earliers/)
  assert.deepEqual(await decisions(), expected)
})

test('a batch that waited on the totals row sees the keyed order the batch holding it placed', async () => {
  await reset()
  const placed = Promise.withResolvers<number>()
  const release = Promise.withResolvers<void>()
  // Batch A places key k and keeps its transaction (and the totals row's lock) open.
  const a = t.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ pid: number }>`
      select pg_backend_pid() as pid from bourse_place_btc_orders_v2(${JSON.stringify([entry(5, '0.10000000', 'k')])}::jsonb, 1::numeric)
    `.execute(trx)
    placed.resolve(rows[0]!.pid)
    await release.promise
  })
  const aPid = await placed.promise
  // Batch B holds a retry of k: it waits for A's lock, so its look-up must come after it.
  const b = place([entry(6, '0.10000000'), entry(5, '0.10000000', 'k')])
  for (let waited = 0; ; waited += 20) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where ${aPid}::int = any (pg_blocking_pids(pid))`.execute(t.db)
    if (rows[0]!.n > 0) break
    if (waited > 10_000) throw new Error('batch B never waited on batch A')
    await sleep(20)
  }
  release.resolve()
  await a
  assert.deepEqual(await b, [['placed', null], ['earlier', id(5)]])
})
