/** Migration 0011 going down to the placing function that returns whole rows, and up again. */
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

/** Places one order through the function as it stands, returning its one row. */
async function placeOne(id: string): Promise<Record<string, unknown>> {
  const batch = JSON.stringify([[id, 'u1', 'EUR', '10.00', '50000.00', '0.00020000', 'coinbase', '2026-12-07T10:00:00.123Z', null, null]])
  const { rows } = await sql<Record<string, unknown>>`select * from bourse_place_btc_orders(${batch}::jsonb, 100::numeric)`.execute(t.db)
  assert.equal(rows.length, 1)
  return rows[0]!
}

test('migration 0011 goes down to the function answering whole rows and up again', async () => {
  const lean = await placeOne('00000000-0000-4000-8000-000000000001')
  assert.equal(lean.outcome, 'placed')
  assert.equal(lean.id, null, 'a placed order is not read back')
  assert.equal(lean.placed_total_after, '0.00020000')
  const { rows: stored } = await sql<{ created_at: Date }>`select created_at from btc_orders where id = '00000000-0000-4000-8000-000000000001'`.execute(t.db)
  assert.equal(lean.placed_created_at, stored[0]!.created_at.toISOString())

  await answersLess.down(t.db as never)
  const whole = await placeOne('00000000-0000-4000-8000-000000000002')
  assert.equal(whole.outcome, 'placed')
  assert.equal(whole.id, '00000000-0000-4000-8000-000000000002')
  assert.equal(whole.btc_total_after, '0.00040000')
  assert.ok(!('placed_created_at' in whole))

  await answersLess.up(t.db as never)
  const again = await placeOne('00000000-0000-4000-8000-000000000003')
  assert.equal(again.outcome, 'placed')
  assert.equal(again.placed_total_after, '0.00060000')
})
