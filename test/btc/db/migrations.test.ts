/**
 * Migration 0008 on orders stored before it: each gets the running total of the orders up
 * to it (in `created_at, id` order), the totals row still equals the last, and from then on
 * an order of 0 BTC is refused by the table itself.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { migrations } from '../../../src/database.ts'
import { migrateToLatest } from '../../../src/platform/db/index.ts'
import { openTestSchema } from '../../helpers/db.ts'

test('0008 gives stored orders their running totals and refuses 0 BTC from then on', async () => {
  const before = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0008'))
  const scratch = await openTestSchema<unknown>(before)
  try {
    const { db, schema } = scratch
    await sql`insert into users (id, credit, webhook_secret) values ('u1', 0, 'whsec_test')`.execute(db)
    await sql`
      insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, price_source, price_fetched_at, created_at)
      values
        ('00000000-0000-4000-8000-000000000002', 'u1', 'EUR', 10, 50000, 0.0002, 'coinbase', now(), '2026-01-01T00:00:01Z'),
        ('00000000-0000-4000-8000-000000000001', 'u1', 'EUR', 10, 50000, 0.0002, 'coinbase', now(), '2026-01-01T00:00:01Z'),
        ('00000000-0000-4000-8000-000000000003', 'u1', 'EUR', 50, 50000, 0.001, 'coinbase', now(), '2026-01-01T00:00:00Z')
    `.execute(db)
    await sql`update btc_totals set btc_total = 0.0014`.execute(db)
    await migrateToLatest(db, schema, migrations)
    const { rows } = await sql<{ id: string; total: string }>`select id, btc_total_after::text as total from btc_orders order by btc_total_after`.execute(db)
    assert.deepEqual(rows, [
      { id: '00000000-0000-4000-8000-000000000003', total: '0.00100000' },
      { id: '00000000-0000-4000-8000-000000000001', total: '0.00120000' },
      { id: '00000000-0000-4000-8000-000000000002', total: '0.00140000' },
    ])
    await assert.rejects(
      sql`
        insert into btc_orders (id, user_id, currency, amount, btc_price, btc_amount, btc_total_after, price_source, price_fetched_at)
        values (gen_random_uuid(), 'u1', 'EUR', 0.01, 50000, 0, 0.0014, 'coinbase', now())
      `.execute(db),
      /btc_orders_btc_amount_check/,
    )
  } finally {
    await scratch.close()
  }
})
