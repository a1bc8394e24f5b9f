/** The SQL side of the callbacks' timestamps, and migration 0004 going down and up again. */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { sql } from 'kysely'
import * as callbacksInFinish from '../../../../src/trading/db/migrations/0004_callbacks_in_finish.ts'
import { openTestDb, type TestDb } from '../../../helpers/db.ts'

let t: TestDb

before(async () => {
  t = await openTestDb()
})
after(() => t.close())

test('timestamps as the API reads them and as the callbacks format them in SQL agree to the millisecond', async () => {
  const texts = ['2026-11-22 10:00:00.291+00', '2026-11-22 10:00:00.291999+00', '2026-11-22 10:00:00.5+05:30', '1969-12-31 23:59:59.007-02', '2026-11-22 10:00:00+00']
  for (const text of texts) {
    const { rows } = await sql<{ value: Date; formatted: string }>`
      select ${text}::timestamptz as value, bourse_iso_ms(${text}::timestamptz) as formatted
    `.execute(t.db)
    assert.ok(rows[0]!.value instanceof Date, text)
    assert.equal(rows[0]!.value.toISOString(), rows[0]!.formatted, text)
  }
})

test('migration 0004 goes down to the one-argument finishing function and up again', async () => {
  const signatures = async () =>
    (await sql<{ sig: string }>`
      select p.oid::regprocedure::text as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = ${t.schema} and p.proname = 'bourse_finish_orders'
    `.execute(t.db)).rows.map((r) => r.sig)
  assert.deepEqual(await signatures(), ['bourse_finish_orders(jsonb,text,double precision)'])
  await callbacksInFinish.down(t.db as never)
  assert.deepEqual(await signatures(), ['bourse_finish_orders(jsonb)'])
  await callbacksInFinish.up(t.db as never)
  assert.deepEqual(await signatures(), ['bourse_finish_orders(jsonb,text,double precision)'])
})
