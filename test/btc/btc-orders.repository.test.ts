/**
 * Placing a batch of BTC orders in one transaction on the real PostgreSQL: decided in the
 * order given against the locked total, refusals at their turn, idempotency keys stored
 * before or earlier in the batch, and two batches at once serialised by the totals row.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { sql } from 'kysely'
import { findBtcOrder, type NewBtcOrder, newBtcOrderId, placeBtcOrders } from '../../src/btc/btc-orders.repository.ts'
import { createAccounts } from '../../src/trading/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

let testDb: TestDb
before(async () => {
  testDb = await openTestDb()
  await createAccounts(testDb.db, [{ id: 'u1', credit: 0 }, { id: 'u2', credit: 0 }])
})
after(async () => {
  await testDb.close()
})
beforeEach(async () => {
  await sql`delete from btc_orders`.execute(testDb.db)
  await sql`update btc_totals set btc_total = 0`.execute(testDb.db)
})

/** A BTC amount with the 8 decimals PostgreSQL writes back (`0.6` → `0.60000000`). */
const btc8 = (text: string) => {
  const [whole, fraction = ''] = text.split('.')
  return `${whole}.${fraction.padEnd(8, '0')}`
}

/** An order as the route makes it: under a key, the id the key stands for; `btcAmount` as short as wished. */
const order = (btcAmount: string, extra: Partial<NewBtcOrder> = {}): NewBtcOrder => {
  const userId = extra.userId ?? 'u1'
  return {
    id: newBtcOrderId(userId, extra.idempotencyKey ?? null),
    userId,
    currency: 'EUR',
    amount: '10.00',
    btcPrice: '50000',
    btcAmount: btc8(btcAmount),
    priceSource: 'coinbase',
    priceFetchedAt: new Date(),
    idempotencyKey: null,
    requestHash: null,
    ...extra,
  }
}

const total = async () => (await sql<{ t: string }>`select btc_total::text as t from btc_totals`.execute(testDb.db)).rows[0]!.t

describe('placeBtcOrders', () => {
  it('decides a batch in order against the running total: a refusal reports the room left at its turn', async () => {
    const outcomes = await placeBtcOrders(testDb.db, [order('0.6'), order('0.5'), order('0.3'), order('0.2')], '1')
    assert.equal('placed' in outcomes[0]! && outcomes[0].placed.btc_total_after, '0.60000000')
    assert.deepEqual(outcomes[1], { capExceeded: true, available: '0.40000000' })
    assert.equal('placed' in outcomes[2]! && outcomes[2].placed.btc_total_after, '0.90000000')
    assert.deepEqual(outcomes[3], { capExceeded: true, available: '0.10000000' })
    assert.equal(await total(), '0.90000000')
  })

  it('answers an order placed from what it sent, which is what the table holds, whatever the decimals', async () => {
    const sent = [
      order('0.00000001', { amount: '0.01', btcPrice: '61234.5', currency: 'USD' }),
      order('12.34567891', { amount: '999999999.99', btcPrice: '81000000.123456789012', priceSource: 'kraken' }),
      order('0.5', { amount: '250.00', btcPrice: '0.5', userId: 'u2', idempotencyKey: 'k', requestHash: 'h' }),
    ]
    const outcomes = await placeBtcOrders(testDb.db, sent, '100')
    for (const outcome of outcomes) {
      assert.ok('placed' in outcome)
      assert.deepEqual(outcome.placed, await findBtcOrder(testDb.db, outcome.placed.id, undefined))
    }
  })

  it('refuses a batch holding a decimal PostgreSQL would write back otherwise, before placing any of it', async () => {
    for (const [field, value] of [
      ['amount', '10.5'],
      ['amount', '010.50'],
      ['btcAmount', '0.1'],
      ['btcPrice', '050000'],
      ['btcPrice', '5e4'],
      ['currency', 'EUR '],
    ] as const) {
      await assert.rejects(placeBtcOrders(testDb.db, [order('0.1'), order('0.1', { [field]: value })], '10'), (err: Error) => {
        assert.ok(err instanceof RangeError)
        assert.match(err.message, new RegExp(`${field} "${value}" is not in the form PostgreSQL stores`))
        return true
      })
    }
    assert.equal(await total(), '0.00000000')
  })

  it('answers an idempotency key used before, or earlier in the batch, with that order', async () => {
    const [first] = await placeBtcOrders(testDb.db, [order('0.1', { idempotencyKey: 'k', requestHash: 'h' })], '10')
    assert.ok(first && 'placed' in first)
    const outcomes = await placeBtcOrders(
      testDb.db,
      [
        order('0.1', { idempotencyKey: 'k', requestHash: 'h' }),
        order('0.2', { idempotencyKey: 'k2' }),
        order('0.2', { idempotencyKey: 'k2' }),
        // The same key of another user is another order.
        order('0.3', { userId: 'u2', idempotencyKey: 'k' }),
      ],
      '10',
    )
    assert.deepEqual(outcomes[0], { earlier: first.placed })
    assert.ok('placed' in outcomes[1]!)
    assert.deepEqual(outcomes[2], { earlier: outcomes[1].placed })
    assert.ok('placed' in outcomes[3]!)
    // What a placement answers is what the table holds (numbers as stored, the time, the running total).
    for (const placed of [first.placed, outcomes[1].placed, outcomes[3].placed]) {
      assert.deepEqual(placed, await findBtcOrder(testDb.db, placed.id, undefined))
    }
    assert.equal(await total(), '0.60000000')
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from btc_orders`.execute(testDb.db)
    assert.equal(rows[0]!.n, 3)
  })

  it('answers a retry with its order even when the cap is reached, and the retry takes none of the room left', async () => {
    const [first] = await placeBtcOrders(testDb.db, [order('0.9', { idempotencyKey: 'big', requestHash: 'h' })], '1')
    assert.ok(first && 'placed' in first)
    const outcomes = await placeBtcOrders(
      testDb.db,
      [order('0.9', { idempotencyKey: 'big', requestHash: 'h' }), order('0.1', { idempotencyKey: 'small' }), order('0.9', { idempotencyKey: 'big', requestHash: 'h' })],
      '1',
    )
    assert.deepEqual(outcomes[0], { earlier: first.placed })
    assert.equal('placed' in outcomes[1]! && outcomes[1].placed.btc_total_after, '1.00000000')
    assert.deepEqual(outcomes[2], { earlier: first.placed })
    assert.equal(await total(), '1.00000000')
  })

  it('two batches racing with one key (two API processes): one places it, the other answers with that order', async () => {
    for (let round = 0; round < 10; round++) {
      const key = `race-${round}`
      const [a, b] = await Promise.all([
        placeBtcOrders(testDb.db, [order('0.01'), order('0.01', { idempotencyKey: key, requestHash: 'h' })], '10'),
        placeBtcOrders(testDb.db, [order('0.01', { idempotencyKey: key, requestHash: 'h' }), order('0.01')], '10'),
      ])
      const mine = [a![1]!, b![0]!]
      const placed = mine.filter((o) => 'placed' in o)
      assert.equal(placed.length, 1, JSON.stringify(mine))
      const other = mine.find((o) => 'earlier' in o)
      assert.ok(other && 'earlier' in other && 'placed' in placed[0]! && other.earlier.id === placed[0].placed.id)
    }
    const { rows } = await sql<{ n: number; sum: string }>`select count(*)::int as n, sum(btc_amount)::text as sum from btc_orders`.execute(testDb.db)
    assert.equal(rows[0]!.n, 30)
    assert.equal(await total(), '0.30000000')
  })

  it('a retry of an order placed under a key before ids came from keys (another id) answers with that order', async () => {
    // Placed as before migration 0010: a random id under the key.
    const [older] = await placeBtcOrders(testDb.db, [order('0.1', { id: newBtcOrderId('u1', null), idempotencyKey: 'old', requestHash: 'h' })], '10')
    assert.ok(older && 'placed' in older)
    const outcomes = await placeBtcOrders(
      testDb.db,
      [order('0.2'), order('0.1', { idempotencyKey: 'old', requestHash: 'h' }), order('0.3', { idempotencyKey: 'new' })],
      '10',
    )
    assert.ok('placed' in outcomes[0]! && 'placed' in outcomes[2]!)
    assert.deepEqual(outcomes[1], { earlier: older.placed })
    assert.equal(outcomes[2].placed.id, newBtcOrderId('u1', 'new'))
    assert.equal(await total(), '0.60000000')
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from btc_orders`.execute(testDb.db)
    assert.equal(rows[0]!.n, 3)
  })

  it('serialises concurrent batches on the totals row: the running totals form one sequence', async () => {
    const batches = Array.from({ length: 8 }, (_, b) => Array.from({ length: 25 }, (_, i) => order(`0.0${(b * 25 + i) % 9 + 1}`)))
    const results = await Promise.all(batches.map((batch) => placeBtcOrders(testDb.db, batch, '5')))
    const placed = results.flat().flatMap((o) => ('placed' in o ? [o.placed] : []))
    const refused = results.flat().filter((o) => 'capExceeded' in o)
    assert.equal(placed.length + refused.length, 200)
    assert.ok(refused.length > 0)
    const satoshis = (text: string) => BigInt(text.replace('.', ''))
    let running = 0n
    for (const row of placed.sort((a, b) => (satoshis(a.btc_total_after) < satoshis(b.btc_total_after) ? -1 : 1))) {
      running += satoshis(row.btc_amount)
      assert.equal(satoshis(row.btc_total_after), running)
    }
    assert.ok(running <= 500_000_000n)
    assert.equal(satoshis(await total()), running)
  })
})
