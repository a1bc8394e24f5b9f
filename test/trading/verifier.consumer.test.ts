/**
 * The order verifier against the real Kafka, PostgreSQL and Redis, with a fake
 * verification API speaking real HTTP (each test decides its answers).
 */
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { createStockHistoryRepository } from '../../src/market/index.ts'
import { kafkaBrokers } from '../../src/platform/config.ts'
import { closeDb, createDb } from '../../src/platform/db/index.ts'
import type { Database, Db } from '../../src/database.ts'
import type { OrderRow } from '../../src/trading/db/tables.ts'
import { createAdmin, createConsumer, createProducer, type StringProducer } from '../../src/platform/kafka/clients.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { orderChannel } from '../../src/trading/order-events.ts'
import { encodeOrderMessage, type OrderMessage, orderRowFromMessage } from '../../src/trading/order-message.ts'
import { isFinal } from '../../src/trading/order-view.ts'
import { findOrder, insertOrder } from '../../src/trading/orders.repository.ts'
import type { OrderView } from '../../src/trading/trading.schemas.ts'
import { createVerificationClient } from '../../src/trading/verification.client.ts'
import { createOrderVerifier, type OrderVerifierOptions } from '../../src/trading/verifier.consumer.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { assertDeadLetterHeaders, deadLetters, failingDeadLetterProducer } from '../helpers/dead-letters.ts'
import { closeTestRedis, createTestTopic, openTestRedis, testConfig, testRedisUrl, uniqueName, waitFor } from '../helpers/infra.ts'
import { endOffsets, readTopic } from '../helpers/topic-reader.ts'

const settings = { brokers: kafkaBrokers(testConfig()) }
const log = createLogger({ level: 'error', pretty: false })
let testDb: TestDb
/** The verifier's own pool, apart from the one the assertions use. */
let verifierDb: Db
let redis: Redis
let producer: StringProducer
const cleanups: Array<() => Promise<unknown>> = []

before(async () => {
  testDb = await openTestDb()
  verifierDb = createDb<Database>({ url: testConfig().DATABASE_URL, schema: testDb.schema, max: 10 })
  redis = await openTestRedis()
  producer = createProducer(settings)
  await createStockHistoryRepository(redis).seedStock('stock1', { id: 1, price: [100], time: ['09:00'], performance: 0 })
})
after(async () => {
  // Each step on its own: a topic that fails to delete must not leave connections open.
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup()
    } catch (err) {
      console.warn('cleanup failed', err)
    }
  }
  await producer.close()
  await closeTestRedis(redis)
  await closeDb(verifierDb)
  await testDb.close()
})

/** A verification request held by the fake API until the test answers it. */
interface HeldVerification {
  user: string
  orderId: string
  answer(result: number): void
}

/** A fake verification API: `onRequest` answers each request now, later or never. */
async function startVerifyApi(onRequest: (request: HeldVerification) => void) {
  const requests: HeldVerification[] = []
  const server = createServer({ requestTimeout: 0, keepAlive: true }, (req, res: ServerResponse) => {
    let text = ''
    req.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
    req.on('end', () => {
      const body = JSON.parse(text) as { user: string; order_id: string }
      const held: HeldVerification = {
        user: body.user,
        orderId: body.order_id,
        answer: (result) => {
          if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ result }))
        },
      }
      requests.push(held)
      onRequest(held)
    })
  })
  server.listen({ port: 0, host: '127.0.0.1', backlog: 8192 })
  await once(server, 'listening')
  const close = async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
  cleanups.push(close)
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/verify`, requests, close }
}

async function ordersTopic(partitions: number): Promise<string> {
  const topic = uniqueName('orders')
  // The topic's cleanup deletes its dead-letter topic too.
  cleanups.push(await createTestTopic(topic, partitions))
  const admin = createAdmin(settings)
  try {
    await admin.createTopics({ topics: [`${topic}.dead-letter`], partitions: 1, replicas: 1 })
  } finally {
    await admin.close()
  }
  return topic
}

/** Runs a verifier until `stop()`. */
function startVerifier(
  topic: string,
  url: string,
  options: Partial<OrderVerifierOptions> & { group?: string; now?: () => number; producer?: StringProducer } = {},
) {
  const { group: ownGroup, now, producer: ownProducer, ...verifierOptions } = options
  const group = ownGroup ?? uniqueName('verifier')
  const consumer = createConsumer(settings, group, { maxWaitTime: 100 })
  const verifyProducer = ownProducer ?? createProducer(settings)
  const client = createVerificationClient({ url, maxConnections: 3000, retryBaseMs: 20, retryMaxMs: 200 })
  const verifier = createOrderVerifier(
    {
      consumer,
      producer: verifyProducer,
      db: verifierDb,
      redis,
      prices: createStockHistoryRepository(redis),
      client,
      log,
      ...(now && { now }),
    },
    {
      topic,
      deadLetterTopic: `${topic}.dead-letter`,
      maxInFlight: 3000,
      timeoutMs: 10_000,
      callbacks: { retryForMs: 60_000, schema: testDb.schema },
      commitIntervalMs: 50,
      ...verifierOptions,
    },
  )
  const controller = new AbortController()
  const running = verifier.run(controller.signal)
  let stopped: Promise<void> | undefined
  const stop = () => {
    stopped ??= (async () => {
      controller.abort()
      try {
        await running
      } finally {
        await client.close()
        await consumer.close(true)
        await verifyProducer.close()
      }
    })()
    return stopped
  }
  cleanups.push(stop)
  return { verifier, group, stop, running }
}

function order(fields: Pick<OrderMessage, 'user' | 'side' | 'quantity'> & Partial<OrderMessage>): OrderMessage {
  const id = fields.id ?? randomUUID()
  return {
    v: 1,
    id,
    stock: 'stock1',
    callback_url: null,
    idempotency_key: null,
    request_hash: createHash('sha256').update(id).digest('hex'),
    created_at: new Date().toISOString(),
    ...fields,
  }
}

async function produce(topic: string, orders: OrderMessage[], partition?: number): Promise<void> {
  await producer.send({
    messages: orders.map((o) => ({ topic, key: o.id, value: encodeOrderMessage(o), ...(partition !== undefined && { partition }) })),
  })
}

async function seedUser(id: string, credit: number): Promise<void> {
  await testDb.db
    .insertInto('users')
    .values({ id, contract_id: Number(id.replace(/\D/g, '')) || null, credit, webhook_secret: 'whsec_dGVzdA==' })
    .execute()
}

async function finalOrder(id: string, timeoutMs = 20_000): Promise<OrderRow> {
  return waitFor(
    async () => {
      const row = await findOrder(testDb.db, id)
      return row && isFinal(row.status) ? row : undefined
    },
    { what: `order ${id} to be final`, timeoutMs },
  )
}

async function userCredit(id: string): Promise<number> {
  const row = await testDb.db.selectFrom('users').select('credit').where('id', '=', id).executeTakeFirstOrThrow()
  return Number(row.credit)
}

/** The committed offsets of a group, by partition. */
async function committedOffsets(group: string, topic: string): Promise<Map<number, bigint>> {
  const admin = createAdmin(settings)
  try {
    const [result] = await admin.listConsumerGroupOffsets({ groups: [group] })
    const partitions = result?.topics.find((t) => t.name === topic)?.partitions ?? []
    return new Map(partitions.filter((p) => p.committedOffset >= 0n).map((p) => [p.partitionIndex, p.committedOffset]))
  } finally {
    await admin.close()
  }
}

describe('one verifier, answers decided by user', () => {
  let topic: string
  let verifier: ReturnType<typeof startVerifier>
  let subscriber: Redis
  const published = new Map<string, OrderView[]>()
  // Long enough that an answered verification never times out on a busy machine.
  const TIMEOUT_MS = 2000

  before(async () => {
    topic = await ordersTopic(3)
    const api = await startVerifyApi((request) => {
      if (request.user === 'stalled') return // never answered
      request.answer(request.user === 'refused' ? 1 : 0)
    })
    verifier = startVerifier(topic, api.url, { timeoutMs: TIMEOUT_MS })
    subscriber = new Redis(testRedisUrl)
    subscriber.on('message', (channel: string, message: string) => {
      const view = JSON.parse(message) as OrderView
      published.set(view.order_id, [...(published.get(view.order_id) ?? []), view])
    })
    for (const [user, credit] of [['user1', 10_000], ['user2', 50], ['user3', 1000], ['stalled', 1000], ['refused', 1000]] as const) {
      await seedUser(user, credit)
    }
  })
  after(async () => {
    await verifier.stop()
    subscriber.disconnect()
  })

  /** Produces orders after subscribing to their status, and waits until they are final. */
  async function place(...orders: OrderMessage[]): Promise<OrderRow[]> {
    await subscriber.subscribe(...orders.map((o) => orderChannel(o.id)))
    await produce(topic, orders)
    return Promise.all(orders.map((o) => finalOrder(o.id)))
  }

  test('a verified buy is filled: credit debited, holding added, transaction written, projection and status published', async () => {
    const buy = order({ user: 'user1', side: 'buy', quantity: 10 })
    const [filled] = await place(buy)
    assert.equal(filled!.status, 'filled')
    assert.equal(Number(filled!.price), 100)
    assert.equal(Number(filled!.amount), 1000)
    assert.equal(await userCredit('user1'), 9000)
    const holding = await testDb.db.selectFrom('holdings').selectAll().where('user_id', '=', 'user1').executeTakeFirstOrThrow()
    assert.deepEqual([holding.stock, Number(holding.quantity), Number(holding.cost)], ['stock1', 10, 1000])
    const transactions = await testDb.db.selectFrom('transactions').selectAll().where('order_id', '=', buy.id).execute()
    assert.equal(transactions.length, 1)
    assert.deepEqual([Number(transactions[0]!.quantity), Number(transactions[0]!.amount)], [10, 1000])
    assert.deepEqual(JSON.parse((await redis.get('user1'))!), { id: 1, credit: 9000 })
    const views = await waitFor(() => (published.get(buy.id)?.length === 2 ? published.get(buy.id) : undefined), { what: 'two status messages' })
    assert.deepEqual(views.map((v) => v.status), ['verifying', 'filled'])
    assert.equal(views[1]!.price, 100)
  })

  test('a verified sell of shares held is filled and credits the amount', async () => {
    const [sold] = await place(order({ user: 'user1', side: 'sell', quantity: 4 }))
    assert.equal(sold!.status, 'filled')
    assert.equal(await userCredit('user1'), 9400)
    const holding = await testDb.db.selectFrom('holdings').selectAll().where('user_id', '=', 'user1').executeTakeFirstOrThrow()
    assert.deepEqual([Number(holding.quantity), Number(holding.cost)], [6, 600])
  })

  test('rejections: insufficient credit, insufficient holdings, unknown stock, verification failed', async () => {
    const tooBig = order({ user: 'user2', side: 'buy', quantity: 1 })
    const notHeld = order({ user: 'user3', side: 'sell', quantity: 1 })
    const noStock = order({ user: 'user3', side: 'buy', quantity: 1, stock: 'nostock' })
    const refused = order({ user: 'refused', side: 'buy', quantity: 1 })
    const rows = await place(tooBig, notHeld, noStock, refused)
    assert.deepEqual(
      rows.map((r) => [r.status, r.reason]),
      [
        ['rejected', 'insufficient_credit'],
        ['rejected', 'insufficient_holdings'],
        ['rejected', 'unknown_stock'],
        ['rejected', 'verification_failed'],
      ],
    )
    assert.equal(await userCredit('user2'), 50)
    assert.equal(await userCredit('user3'), 1000)
    const count = await testDb.db
      .selectFrom('transactions')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('order_id', 'in', rows.map((r) => r.id))
      .executeTakeFirstOrThrow()
    assert.equal(Number(count.n), 0)
    await waitFor(() => published.get(refused.id)?.at(-1)?.reason === 'verification_failed', { what: 'the rejection published' })
  })

  test('a verification not answered within the timeout is rejected at the limit', async () => {
    const stalled = order({ user: 'stalled', side: 'buy', quantity: 1 })
    const [row] = await place(stalled)
    assert.deepEqual([row!.status, row!.reason], ['rejected', 'verification_timeout'])
    const took = row!.finished_at!.getTime() - row!.verification_started_at!.getTime()
    assert.ok(took >= TIMEOUT_MS - 5 && took < TIMEOUT_MS + 1000, `rejected ${took} ms after the verification started`)
    assert.equal(await userCredit('stalled'), 1000)
  })

  test('a duplicate message (and a row the API inserted first) executes once', async () => {
    const buy = order({ user: 'user3', side: 'buy', quantity: 2 })
    await insertOrder(testDb.db, orderRowFromMessage(buy))
    // Two copies at once (the second waits for the first), then one after the order is final.
    await produce(topic, [buy, buy])
    await finalOrder(buy.id)
    const replayedBefore = verifier.verifier.stats.replayed
    await produce(topic, [buy])
    await waitFor(() => verifier.verifier.stats.replayed === replayedBefore + 1, { what: 'the late copy to be seen as a replay' })
    const transactions = await testDb.db.selectFrom('transactions').selectAll().where('order_id', '=', buy.id).execute()
    assert.equal(transactions.length, 1)
    assert.equal(await userCredit('user3'), 800)
  })

  test('poison messages and orders of unknown users go to the dead-letter topic with the reason', async () => {
    const ghost = order({ user: 'ghost', side: 'buy', quantity: 1 })
    await producer.send({ messages: [{ topic, key: 'junk', value: '{"not": "an order"}' }, { topic, key: 'junk2', value: 'garbage' }] })
    await produce(topic, [ghost])
    const dead = await waitFor(
      async () => {
        const records = (await readTopic(`${topic}.dead-letter`)).flat()
        return records.length >= 3 ? records : undefined
      },
      { what: 'three dead letters' },
    )
    const reasons = new Map(dead.map((r) => [r.key, r.headers.get('bourse-error') ?? '']))
    assert.match(reasons.get('junk')!, /invalid order message/)
    assert.match(reasons.get('junk2')!, /not JSON/)
    assert.match(reasons.get(ghost.id)!, /refused by the database.*foreign key/)
    assert.equal(await findOrder(testDb.db, ghost.id), undefined)
  })
})

test('a failed dead-letter send is retried, not fatal: the poison lands once with its headers, later orders are filled', async () => {
  const topic = await ordersTopic(1)
  const deadLetterTopic = `${topic}.dead-letter`
  await seedUser('dlq1', 1000)
  const api = await startVerifyApi((request) => request.answer(0))
  const failing = failingDeadLetterProducer(createProducer(settings), deadLetterTopic, 2)
  const verifier = startVerifier(topic, api.url, { producer: failing.producer, retryBaseMs: 10, retryMaxMs: 50 })
  await producer.send({ messages: [{ topic, key: 'junk', value: 'garbage', partition: 0 }] })
  await waitFor(() => verifier.verifier.stats.deadLettered === 1, { what: 'the poison dead-lettered' })
  const later = order({ user: 'dlq1', side: 'buy', quantity: 1 })
  await produce(topic, [later], 0)
  assert.equal((await finalOrder(later.id)).status, 'filled')
  await waitFor(async () => (await committedOffsets(verifier.group, topic)).get(0) === 2n, { what: 'both messages committed' })
  await verifier.stop()
  assert.equal(failing.failed(), 2, 'two sends failed before one went through')
  const dead = await deadLetters(deadLetterTopic)
  assert.equal(dead.length, 1, 'dead-lettered exactly once')
  assertDeadLetterHeaders(dead[0]!, { topic, partition: 0, offset: 0n }, /not JSON/)
  assert.deepEqual([dead[0]!.key, dead[0]!.value], ['junk', 'garbage'])
})

test('2,000 orders verify at once: the API holds every request until all 2,000 wait, then answers', async () => {
  const topic = await ordersTopic(3)
  const ORDERS = 2000
  const users = Array.from({ length: 20 }, (_, i) => `many${i + 1}`)
  for (const user of users) await seedUser(user, 1_000_000)
  const api = await startVerifyApi(() => {
    if (api.requests.length === ORDERS) for (const held of api.requests) held.answer(0)
  })
  const orders = Array.from({ length: ORDERS }, (_, i) => order({ user: users[i % users.length]!, side: 'buy', quantity: 1 }))
  const verifier = startVerifier(topic, api.url, { maxInFlight: 2500, timeoutMs: 30_000 })
  await produce(topic, orders)
  await waitFor(() => verifier.verifier.stats.filled === ORDERS, { what: `${ORDERS} orders filled`, timeoutMs: 40_000 })
  assert.equal(api.requests.length, ORDERS, 'one verification per order')
  const count = await testDb.db
    .selectFrom('transactions')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('user_id', 'in', users)
    .executeTakeFirstOrThrow()
  assert.equal(Number(count.n), ORDERS)
  for (const user of users) assert.equal(await userCredit(user), 1_000_000 - 100 * (ORDERS / users.length))
  await verifier.stop()
})

test('committed offsets never pass an unfinished order, and a restart reads from the committed offset', async () => {
  const topic = await ordersTopic(2)
  await seedUser('offsets1', 1_000_000)
  const held = order({ user: 'offsets1', side: 'buy', quantity: 1 })
  const later = Array.from({ length: 20 }, () => order({ user: 'offsets1', side: 'buy', quantity: 1 }))
  const marker = order({ user: 'offsets1', side: 'buy', quantity: 1 })
  const api = await startVerifyApi((request) => {
    if (request.orderId !== held.id && request.orderId !== marker.id) request.answer(0)
  })
  const verifier = startVerifier(topic, api.url)
  // Partition 0: the held order first (offset 0), then 20 that finish.
  await produce(topic, [held, ...later], 0)
  await waitFor(() => verifier.verifier.stats.filled === 20 && verifier.verifier.stats.inFlight === 1, {
    what: 'the later orders finished, the first one still verifying',
  })
  // Partition 1: an order answered only now. Once its commit lands, the commit carrying
  // it was computed after partition 0's later orders had finished.
  await produce(topic, [marker], 1)
  await waitFor(() => api.requests.some((r) => r.orderId === marker.id), { what: 'the marker to be verifying' })
  api.requests.find((r) => r.orderId === marker.id)!.answer(0)
  const offsets = await waitFor(
    async () => {
      const committed = await committedOffsets(verifier.group, topic)
      return committed.get(1) === 1n ? committed : undefined
    },
    { what: 'the marker committed' },
  )
  assert.equal(offsets.get(0), 0n, 'partition 0 stays at the unfinished order (offset 0)')
  assert.equal((await findOrder(testDb.db, held.id))!.status, 'verifying')

  api.requests.find((r) => r.orderId === held.id)!.answer(0)
  await finalOrder(held.id)
  await waitFor(async () => (await committedOffsets(verifier.group, topic)).get(0) === 21n, {
    what: 'partition 0 committed past every order (next to read: 21)',
  })
  await verifier.stop()

  // The committed offset is the next to read: a restarted group gets only the new order.
  const next = order({ user: 'offsets1', side: 'buy', quantity: 1 })
  await produce(topic, [next], 0)
  const restarted = startVerifier(topic, api.url, { group: verifier.group })
  await finalOrder(next.id)
  assert.equal(restarted.verifier.stats.received, 1)
  await restarted.stop()
})

test('two verifiers in one group: a rebalance while orders verify loses none and executes none twice', async () => {
  const topic = await ordersTopic(3)
  await seedUser('shared1', 1_000_000)
  // No answer until the second verifier has orders: nothing can be committed before the
  // partitions move, however slowly it joins. Then answers come after up to 1.5 s, so
  // orders are in flight on both sides.
  const held: HeldVerification[] = []
  let released = false
  const answerLater = (request: HeldVerification) => setTimeout(() => request.answer(0), Math.random() * 1500)
  const api = await startVerifyApi((request) => (released ? answerLater(request) : held.push(request)))
  const first = startVerifier(topic, api.url, { timeoutMs: 60_000 })
  const batch = () => Array.from({ length: 60 }, () => order({ user: 'shared1', side: 'buy', quantity: 1 }))
  const orders = batch()
  await produce(topic, orders)
  await waitFor(() => first.verifier.stats.received > 0, { what: 'the first verifier to consume' })
  const second = startVerifier(topic, api.url, { group: first.group, timeoutMs: 60_000 })
  await waitFor(() => second.verifier.stats.received > 0, { what: 'the second verifier to get partitions' })
  released = true
  for (const request of held) answerLater(request)
  const more = batch()
  await produce(topic, more)
  for (const o of [...orders, ...more]) assert.equal((await finalOrder(o.id)).status, 'filled')
  const ends = await endOffsets(topic)
  await waitFor(
    async () => {
      const committed = await committedOffsets(first.group, topic)
      return ends.every((end, partition) => committed.get(partition) === end)
    },
    { what: 'every partition committed to its end' },
  )
  const count = await testDb.db
    .selectFrom('transactions')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('user_id', '=', 'shared1')
    .executeTakeFirstOrThrow()
  assert.equal(Number(count.n), 120)
  assert.equal(await userCredit('shared1'), 1_000_000 - 120 * 100)
  await Promise.all([first.stop(), second.stop()])
})

test('a shutdown abandons stalled verifications uncommitted; after a restart they keep their original deadline', async () => {
  const topic = await ordersTopic(1)
  await seedUser('restart1', 1000)
  const stuck = order({ user: 'restart1', side: 'buy', quantity: 1 })
  const api = await startVerifyApi(() => {}) // never answers
  const first = startVerifier(topic, api.url, { timeoutMs: 2500, shutdownGraceMs: 100 })
  await produce(topic, [stuck])
  await waitFor(() => api.requests.length === 1, { what: 'the verification to start' })
  await first.stop()
  const row = (await findOrder(testDb.db, stuck.id))!
  assert.equal(row.status, 'verifying', 'abandoned, not finished')
  assert.equal((await committedOffsets(first.group, topic)).get(0) ?? 0n, 0n, 'not committed')

  // Past the original deadline by its clock, the restarted verifier rejects it without
  // asking again (a deadline counted from its own start would still be 2.5 s away).
  const deadline = row.verification_started_at!.getTime() + 2500
  const second = startVerifier(topic, api.url, { group: first.group, timeoutMs: 2500, now: () => Math.max(Date.now(), deadline + 1) })
  const final = await finalOrder(stuck.id)
  assert.deepEqual([final.status, final.reason], ['rejected', 'verification_timeout'])
  assert.equal(api.requests.length, 1, 'no second verification request')
  assert.equal(second.verifier.stats.timeouts, 1)
  await second.stop()
})
