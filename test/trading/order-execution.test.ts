/**
 * Finishing orders (`finishOrders`, `finishOrder`, `createOrderFinisher`) against the real
 * PostgreSQL, in a schema of this file's own: every outcome, the callbacks written with
 * them, batches mixing users and sides, and concurrent batches on the same users.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, beforeEach, describe, test } from 'node:test'
import { sql } from 'kysely'
import pg from 'pg'
import { closeDb, createDb, notifyChannel } from '../../src/platform/db/index.ts'
import type { Database, Db } from '../../src/database.ts'
import type { OrderRow } from '../../src/trading/db/tables.ts'
import {
  createOrderFinisher,
  type FinishItem,
  finishOrder,
  finishOrders,
  type VerificationOutcome,
} from '../../src/trading/order-execution.ts'
import { orderView } from '../../src/trading/order-view.ts'
import { findOrder } from '../../src/trading/orders.repository.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testConfig } from '../helpers/infra.ts'

let t: TestDb
const callbacks = () => ({ retryForMs: 60_000, schema: t.schema })
const url = 'http://127.0.0.1:9/callbacks'

before(async () => {
  t = await openTestDb()
})
after(() => t.close())
beforeEach(async () => {
  await t.db.deleteFrom('users').execute()
})

async function seedUser(id: string, credit: number | string, holdings: Record<string, [number, number | string]> = {}) {
  await t.db.insertInto('users').values({ id, contract_id: null, credit, webhook_secret: 'whsec_dGVzdA==' }).execute()
  for (const [stock, [quantity, cost]] of Object.entries(holdings)) {
    await t.db.insertInto('holdings').values({ user_id: id, stock, quantity, cost }).execute()
  }
}

/** Inserts a verifying order; resolves to its id. */
async function placeOrder(
  userId: string,
  side: 'buy' | 'sell',
  quantity: number,
  options: { stock?: string; callback?: boolean } = {},
): Promise<string> {
  const id = randomUUID()
  await t.db
    .insertInto('orders')
    .values({
      id,
      user_id: userId,
      stock: options.stock ?? 'stock1',
      side,
      quantity,
      callback_url: options.callback === false ? null : url,
      status: 'verifying',
      request_hash: id,
      verification_started_at: sql`now()`,
    })
    .execute()
  return id
}

const user = (id: string) => t.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const holding = (userId: string, stock = 'stock1') =>
  t.db.selectFrom('holdings').selectAll().where('user_id', '=', userId).where('stock', '=', stock).executeTakeFirst()
const transactionsOf = (orderId: string) => t.db.selectFrom('transactions').selectAll().where('order_id', '=', orderId).execute()
const deliveryOf = (orderId: string) =>
  t.db.selectFrom('webhook_deliveries').selectAll().where('order_id', '=', orderId).executeTakeFirst()
const verified = (price: number | null | undefined): VerificationOutcome => ({ verified: true, price })

/** The order as stored. */
async function stored(id: string): Promise<OrderRow> {
  const row = await findOrder(t.db, id)
  assert.ok(row, `order ${id} exists`)
  return row
}

describe('one order at a time (finishOrder)', () => {
  test('a verified buy is filled: credit debited, holding added, version bumped, transaction and callback written', async () => {
    await seedUser('u1', 1000)
    const before = await user('u1')
    const id = await placeOrder('u1', 'buy', 3)
    const result = await finishOrder(t.db, id, verified(12.34567), callbacks())
    assert.equal(result.changed, true)
    const order = await stored(id)
    assert.deepEqual(result.order, order, 'the result is the stored row')
    assert.deepEqual([order.status, order.reason, order.price, order.amount], ['filled', null, '12.3457', '37.0371'])
    assert.ok(order.finished_at && order.finished_at.getTime() === order.updated_at.getTime())
    const after = await user('u1')
    assert.equal(after.credit, '962.9629')
    assert.equal(BigInt(after.version), BigInt(before.version) + 1n)
    assert.deepEqual(result.user, after, 'the user row after the fill')
    const h = await holding('u1')
    assert.deepEqual([h?.quantity, h?.cost], ['3', '37.0371'])
    const [tx, ...more] = await transactionsOf(id)
    assert.equal(more.length, 0)
    assert.deepEqual([tx?.user_id, tx?.side, tx?.quantity, tx?.price, tx?.amount], ['u1', 'buy', '3', '12.3457', '37.0371'])

    // The callback: its data is the order as the API shows it (orderView of the stored row).
    const delivery = await deliveryOf(id)
    assert.ok(delivery)
    assert.match(delivery.id, /^msg_[0-9a-f]{32}$/)
    assert.deepEqual([delivery.status, delivery.event_type, delivery.url, delivery.user_id], ['pending', 'order.filled', url, 'u1'])
    const body = JSON.parse(delivery.payload) as { type: string; timestamp: string; data: unknown }
    assert.deepEqual(Object.keys(body), ['type', 'timestamp', 'data'])
    assert.equal(body.type, 'order.filled')
    assert.equal(body.timestamp, order.finished_at.toISOString(), 'the time the order was finished')
    assert.deepEqual(body.data, orderView(order))
    assert.deepEqual(Object.keys(body.data as object), Object.keys(orderView(order)), 'in the same order')
    const expiresInMs = delivery.expires_at.getTime() - delivery.created_at.getTime()
    assert.ok(Math.abs(expiresInMs - 60_000) < 5, `expires ${expiresInMs} ms after creation`)
  })

  test('a buy costing exactly the credit is filled; one ten-thousandth more is rejected (insufficient_credit)', async () => {
    await seedUser('exact', '30.0003')
    const fits = await placeOrder('exact', 'buy', 3)
    assert.equal((await finishOrder(t.db, fits, verified(10.0001), callbacks())).order.status, 'filled')
    assert.equal((await user('exact')).credit, '0.0000')
    await t.db.updateTable('users').set({ credit: '30.0002' }).where('id', '=', 'exact').execute()
    const short = await placeOrder('exact', 'buy', 3)
    const result = await finishOrder(t.db, short, verified(10.0001), callbacks())
    assert.deepEqual([result.order.status, result.order.reason, result.user], ['rejected', 'insufficient_credit', undefined])
    assert.equal((await user('exact')).credit, '30.0002')
    assert.equal((await transactionsOf(short)).length, 0)
    assert.equal((await deliveryOf(short))?.event_type, 'order.rejected')
  })

  test('a verified sell is filled: the shares leave with their average cost, the amount is credited', async () => {
    await seedUser('seller', 100, { stock1: [3, 10] })
    const id = await placeOrder('seller', 'sell', 2)
    const result = await finishOrder(t.db, id, verified(7), callbacks())
    assert.deepEqual([result.order.status, result.order.price, result.order.amount], ['filled', '7.0000', '14.0000'])
    assert.equal((await user('seller')).credit, '114.0000')
    const h = await holding('seller')
    // round(10 * (3 - 2) / 3, 4)
    assert.deepEqual([h?.quantity, h?.cost], ['1', '3.3333'])
    assert.equal(result.user?.credit, '114.0000')
  })

  test('a sell of shares not held, or not enough of them, is rejected (insufficient_holdings)', async () => {
    await seedUser('poor', 100, { stock1: [1, 5] })
    const tooMany = await placeOrder('poor', 'sell', 2)
    const none = await placeOrder('poor', 'sell', 1, { stock: 'stock2' })
    for (const id of [tooMany, none]) {
      const result = await finishOrder(t.db, id, verified(7), callbacks())
      assert.deepEqual([result.order.status, result.order.reason, result.order.price], ['rejected', 'insufficient_holdings', null])
    }
    assert.equal((await user('poor')).credit, '100.0000')
    assert.deepEqual([(await holding('poor'))?.quantity, await holding('poor', 'stock2')], ['1', undefined])
  })

  test('no price (unknown stock, no price yet, zero, negative, NaN): rejected unknown_stock', async () => {
    await seedUser('u2', 1000)
    const before = await user('u2')
    for (const price of [undefined, null, 0, -5, Number.NaN]) {
      const id = await placeOrder('u2', 'buy', 1)
      const result = await finishOrder(t.db, id, verified(price), callbacks())
      assert.deepEqual([result.order.status, result.order.reason], ['rejected', 'unknown_stock'], `price ${price}`)
    }
    assert.deepEqual(await user('u2'), before, 'the user is untouched')
  })

  test('verification failed or timed out: rejected with that reason, nothing else changes', async () => {
    await seedUser('u3', 1000)
    const before = await user('u3')
    for (const reason of ['verification_failed', 'verification_timeout'] as const) {
      const id = await placeOrder('u3', 'buy', 1)
      const result = await finishOrder(t.db, id, { verified: false, reason }, callbacks())
      assert.deepEqual([result.changed, result.order.status, result.order.reason, result.user], [true, 'rejected', reason, undefined])
      assert.ok(result.order.finished_at)
      const delivery = await deliveryOf(id)
      assert.equal(delivery?.event_type, 'order.rejected')
      // Nulls (price, amount) and the reason as the API shows them.
      assert.deepEqual((JSON.parse(delivery!.payload) as { data: unknown }).data, orderView(await stored(id)))
    }
    assert.deepEqual(await user('u3'), before)
  })

  test('an order whose user is gone is rejected unknown_user', async () => {
    // Only possible with the foreign keys off (a user deleted by hand): the path still exists.
    const id = randomUUID()
    await t.db.connection().execute(async (conn) => {
      await sql`set session_replication_role = replica`.execute(conn)
      try {
        await conn
          .insertInto('orders')
          .values({ id, user_id: 'ghost', stock: 'stock1', side: 'buy', quantity: 1, callback_url: null, status: 'verifying', request_hash: id })
          .execute()
      } finally {
        await sql`set session_replication_role = origin`.execute(conn)
      }
    })
    const result = await finishOrder(t.db, id, verified(10), callbacks())
    assert.deepEqual([result.order.status, result.order.reason], ['rejected', 'unknown_user'])
    await t.db.deleteFrom('orders').where('id', '=', id).execute()
  })

  test('an order already final is left as it is: nothing written, no second callback', async () => {
    await seedUser('u4', 1000)
    const id = await placeOrder('u4', 'buy', 1)
    const first = await finishOrder(t.db, id, verified(10), callbacks())
    const userAfter = await user('u4')
    const delivery = await deliveryOf(id)
    for (const outcome of [verified(20), { verified: false, reason: 'verification_failed' } as const]) {
      const again = await finishOrder(t.db, id, outcome, callbacks())
      assert.equal(again.changed, false)
      assert.equal(again.user, undefined)
      assert.deepEqual(again.order, first.order)
    }
    assert.deepEqual(await user('u4'), userAfter)
    assert.equal((await transactionsOf(id)).length, 1)
    assert.deepEqual(await deliveryOf(id), delivery)
  })

  test('an order without a callback URL gets no callback; a missing order throws', async () => {
    await seedUser('u5', 1000)
    const id = await placeOrder('u5', 'buy', 1, { callback: false })
    assert.equal((await finishOrder(t.db, id, verified(10), callbacks())).order.status, 'filled')
    assert.equal(await deliveryOf(id), undefined)
    const missing = randomUUID()
    await assert.rejects(finishOrder(t.db, missing, verified(10), callbacks()), new RegExp(`order ${missing} does not exist`))
  })
})

describe('batches (finishOrders)', () => {
  test('a batch mixing users and sides: each user in batch order, results in item order, one notification', async () => {
    await seedUser('a', 25, { stock1: [2, 18] })
    await seedUser('b', 1000)
    const items: FinishItem[] = [
      { orderId: await placeOrder('b', 'buy', 5), outcome: verified(10) }, // b: 1000 -> 950
      { orderId: await placeOrder('a', 'buy', 2), outcome: verified(10) }, // a: 25 -> 5
      { orderId: await placeOrder('a', 'buy', 1), outcome: verified(10) }, // a: 5 < 10, rejected
      { orderId: await placeOrder('a', 'sell', 3), outcome: verified(10) }, // a holds 4 now: 5 -> 35
      { orderId: await placeOrder('b', 'sell', 5), outcome: verified(11) }, // b holds 5 (bought above): 950 -> 1005
      { orderId: await placeOrder('b', 'sell', 1), outcome: { verified: false, reason: 'verification_timeout' } },
      { orderId: randomUUID(), outcome: verified(10) }, // missing
      { orderId: await placeOrder('a', 'buy', 1, { stock: 'nostock' }), outcome: verified(undefined) },
    ]
    const listener = new pg.Client({ connectionString: testConfig().DATABASE_URL })
    await listener.connect()
    const notifications: string[] = []
    try {
      listener.on('notification', (n) => notifications.push(n.payload ?? ''))
      const channel = listener.escapeIdentifier(notifyChannel('webhooks', t.schema))
      await listener.query(`LISTEN ${channel}`)
      const results = await finishOrders(t.db, items, callbacks())
      // Notifications reach a listener in commit order: once this one arrives, the batch's has.
      await sql`select pg_notify(${notifyChannel('webhooks', t.schema)}, 'sentinel')`.execute(t.db)
      while (!notifications.includes('sentinel')) await new Promise((resolve) => listener.once('notification', resolve))
      assert.deepEqual(notifications, ['', 'sentinel'], 'one notification for the whole batch')

      assert.deepEqual(
        results.map((r) => r && [r.order.id, r.changed, r.order.status, r.order.reason]),
        items.map((item, n) => {
          const expected: Array<[string, string | null] | undefined> = [
            ['filled', null],
            ['filled', null],
            ['rejected', 'insufficient_credit'],
            ['filled', null],
            ['filled', null],
            ['rejected', 'verification_timeout'],
            undefined,
            ['rejected', 'unknown_stock'],
          ]
          const e = expected[n]
          return e && [item.orderId, true, ...e]
        }),
      )
      for (const result of results) {
        if (result) assert.deepEqual(result.order, await stored(result.order.id))
      }
      assert.equal((await user('a')).credit, '35.0000')
      assert.equal((await user('b')).credit, '1005.0000')
      // a: 18 + 20 = 38 for 4 shares, 3 sold: round(38 * 1 / 4, 4)
      assert.deepEqual([(await holding('a'))?.quantity, (await holding('a'))?.cost], ['1', '9.5000'])
      assert.deepEqual([(await holding('b'))?.quantity, (await holding('b'))?.cost], ['0', '0.0000'])
      // Each fill carries its user as it was right after it; the newest has the highest version.
      const aFills = [results[1], results[3]].map((r) => r?.user)
      assert.deepEqual(aFills.map((u) => u?.credit), ['5.0000', '35.0000'])
      assert.equal(BigInt(aFills[1]!.version), BigInt(aFills[0]!.version) + 1n)
      assert.deepEqual(await user('a'), aFills[1])
      const deliveries = await t.db.selectFrom('webhook_deliveries').select(['order_id', 'id']).execute()
      assert.equal(deliveries.length, 7, 'a callback for every order that exists')
      assert.equal(new Set(deliveries.map((d) => d.id)).size, 7, 'each with its own webhook-id')
    } finally {
      await listener.end()
    }
  })

  test('an order twice in one batch is applied once', async () => {
    await seedUser('twice', 1000)
    const id = await placeOrder('twice', 'buy', 1)
    const [first, second] = await finishOrders(t.db, [{ orderId: id, outcome: verified(10) }, { orderId: id, outcome: verified(10) }], callbacks())
    assert.deepEqual([first?.changed, second?.changed], [true, false])
    assert.equal((await user('twice')).credit, '990.0000')
    assert.equal((await transactionsOf(id)).length, 1)
  })

  test('concurrent batches over the same users, locked in opposite orders: no deadlock, every order once, money conserved', async () => {
    const users = ['c1', 'c2', 'c3', 'c4']
    for (const id of users) await seedUser(id, 10_000, { stock1: [100, 1000] })
    const pool: Db = createDb<Database>({ url: testConfig().DATABASE_URL, schema: t.schema, max: 8 })
    try {
      const orders: Array<{ id: string; userId: string; side: 'buy' | 'sell' }> = []
      for (let n = 0; n < 160; n++) {
        const userId = users[n % users.length]!
        const side = n % 3 === 0 ? 'sell' : 'buy'
        orders.push({ id: await placeOrder(userId, side, 1 + (n % 4)), userId, side })
      }
      // Eight batches of 40, each order in two of them, in shuffled orders.
      const shuffled = (list: typeof orders) => [...list].sort(() => Math.random() - 0.5)
      const batches = Array.from({ length: 8 }, (_, n) => shuffled(orders.slice((n % 4) * 40, (n % 4) * 40 + 40).concat(shuffled(orders).slice(0, 10))))
      const results = await Promise.all(
        batches.map((batch) => finishOrders(pool, batch.map((o) => ({ orderId: o.id, outcome: verified(10) })), callbacks())),
      )
      const changed = results.flat().filter((r) => r?.changed)
      assert.equal(changed.length, orders.length, 'each order changed exactly once')
      const filled = await t.db.selectFrom('orders').selectAll().where('id', 'in', orders.map((o) => o.id)).execute()
      assert.ok(filled.every((o) => o.status === 'filled'), 'enough credit and shares for all')
      const rows = await t.db.selectFrom('transactions').select(['side', 'amount', 'quantity']).where('user_id', 'in', users).execute()
      assert.equal(rows.length, orders.length, 'one transaction per order')
      const net = rows.reduce((sum, r) => sum + (r.side === 'sell' ? 1 : -1) * Number(r.amount), 0)
      const credits = await t.db.selectFrom('users').select('credit').where('id', 'in', users).execute()
      assert.equal(credits.reduce((sum, u) => sum + Number(u.credit), 0), 40_000 + net, 'credit moved only by the transactions')
      const shares = await t.db.selectFrom('holdings').select('quantity').where('user_id', 'in', users).execute()
      const bought = rows.reduce((sum, r) => sum + (r.side === 'buy' ? 1 : -1) * Number(r.quantity), 0)
      assert.equal(shares.reduce((sum, h) => sum + Number(h.quantity), 0), 400 + bought)
      const deliveries = await t.db
        .selectFrom('webhook_deliveries')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('order_id', 'in', orders.map((o) => o.id))
        .executeTakeFirstOrThrow()
      assert.equal(Number(deliveries.n), orders.length, 'one callback per order')
    } finally {
      await closeDb(pool)
    }
  })
})

describe('the finisher (createOrderFinisher)', () => {
  test('orders finished at about the same time share batches and keep their order per user', async () => {
    await seedUser('f1', 35)
    await seedUser('f2', 1000)
    const finisher = createOrderFinisher(t.db, callbacks(), { windowMs: 5, maxBatch: 3, concurrency: 1 })
    const ids = [
      await placeOrder('f1', 'buy', 1),
      await placeOrder('f2', 'buy', 1),
      await placeOrder('f1', 'buy', 1),
      await placeOrder('f1', 'buy', 1),
      await placeOrder('f1', 'buy', 1), // f1's credit covers three
      await placeOrder('f2', 'buy', 1),
      await placeOrder('f2', 'buy', 1),
    ]
    const results = await Promise.all(ids.map((id) => finisher.finish(id, verified(10))))
    assert.deepEqual(
      results.map((r) => r.order.reason),
      [null, null, null, null, 'insufficient_credit', null, null],
    )
    assert.deepEqual(results.map((r) => r.order.id), ids)
    // Seven orders, batches of at most three, one at a time: at least three transactions,
    // and orders of one batch share its start time.
    const started = new Set(results.map((r) => r.order.finished_at!.getTime()))
    assert.ok(started.size >= 3 && started.size < ids.length, `${started.size} distinct batch times`)
  })

  test('a batch PostgreSQL refuses is finished again order by order: only the bad one fails', async () => {
    await seedUser('g1', 1000)
    const finisher = createOrderFinisher(t.db, callbacks(), { windowMs: 20, maxBatch: 10 })
    const good = [await placeOrder('g1', 'buy', 1), await placeOrder('g1', 'buy', 1)]
    const outcomes = await Promise.allSettled([
      finisher.finish(good[0]!, verified(10)),
      finisher.finish('not-a-uuid', verified(10)),
      finisher.finish(good[1]!, verified(10)),
    ])
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled'])
    assert.equal((outcomes[1] as PromiseRejectedResult).reason.code, '22P02')
    assert.equal((await user('g1')).credit, '980.0000')
  })

  test('a missing order rejects; a price that is not a number rejects at once', async () => {
    await seedUser('h1', 1000)
    const finisher = createOrderFinisher(t.db, callbacks())
    const missing = randomUUID()
    await assert.rejects(finisher.finish(missing, verified(10)), new RegExp(`order ${missing} does not exist`))
    const id = await placeOrder('h1', 'buy', 1)
    await assert.rejects(finisher.finish(id, verified(Number.POSITIVE_INFINITY)), RangeError)
    assert.equal((await stored(id)).status, 'verifying')
  })
})
