/**
 * Migration 0011: the placing function that answers less sits beside 0010's, which a process
 * started before the migration still calls (a rolling restart); both lock the one totals row.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql } from 'kysely'
import * as answersLess from '../../../../src/btc/db/migrations/0011_btc_place_answers_less.ts'
import { createAccounts } from '../../../../src/trading/index.ts'
import { openTestDb, type TestDb } from '../../../helpers/db.ts'

let t: TestDb

before(async () => {
  t = await openTestDb()
  await createAccounts(t.db, [{ id: 'u1', credit: 0 }])
})
after(() => t.close())

/** Places one order through `fn`, returning its one row. */
async function placeOne(fn: 'bourse_place_btc_orders' | 'bourse_place_btc_orders_v2', id: string): Promise<Record<string, unknown>> {
  const batch = JSON.stringify([[id, 'u1', 'EUR', '10.00', '50000.00', '0.00020000', 'coinbase', '2026-12-07T10:00:00.123Z', null, null]])
  const { rows } = await sql<Record<string, unknown>>`select * from ${sql.id(fn)}(${batch}::jsonb, 100::numeric)`.execute(t.db)
  assert.equal(rows.length, 1)
  return rows[0]!
}

const functions = async () =>
  (
    await sql<{ name: string }>`
      select p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = ${t.schema} and p.proname like 'bourse_place_btc_orders%' order by 1
    `.execute(t.db)
  ).rows.map((r) => r.name)

test('the new function answers a placed order with its total and time only; the old one still answers whole rows, on the same total', async () => {
  assert.deepEqual(await functions(), ['bourse_place_btc_orders', 'bourse_place_btc_orders_v2'])
  const lean = await placeOne('bourse_place_btc_orders_v2', '00000000-0000-4000-8000-000000000001')
  assert.equal(lean.outcome, 'placed')
  assert.equal(lean.id, null, 'a placed order is not read back')
  assert.equal(lean.placed_total_after, '0.00020000')
  const { rows: stored } = await sql<{ created_at: Date }>`select created_at from btc_orders where id = '00000000-0000-4000-8000-000000000001'`.execute(t.db)
  assert.equal(lean.placed_created_at, stored[0]!.created_at.toISOString())

  // A process started before 0011 places through the old function, after the same total.
  const whole = await placeOne('bourse_place_btc_orders', '00000000-0000-4000-8000-000000000002')
  assert.equal(whole.outcome, 'placed')
  assert.equal(whole.id, '00000000-0000-4000-8000-000000000002')
  assert.equal(whole.btc_total_after, '0.00040000')
  assert.equal((await placeOne('bourse_place_btc_orders_v2', '00000000-0000-4000-8000-000000000003')).placed_total_after, '0.00060000')
})

test('migration 0011 goes down to the old function alone and up again', async () => {
  await answersLess.down(t.db as never)
  assert.deepEqual(await functions(), ['bourse_place_btc_orders'])
  await answersLess.up(t.db as never)
  assert.deepEqual(await functions(), ['bourse_place_btc_orders', 'bourse_place_btc_orders_v2'])
})
