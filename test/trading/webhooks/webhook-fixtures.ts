/**
 * Test fixtures for callbacks: users, filled orders and their outbox rows written straight
 * to PostgreSQL, and a receiver (a real local HTTP server) playing the caller's endpoint.
 */
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { sql } from 'kysely'
import { notifyChannel } from '../../../src/platform/db/index.ts'
import type { Db } from '../../../src/database.ts'
import { createWebhookSecret } from '../../../src/trading/webhooks/webhook-signing.ts'

/** A webhook id of the form the finishing statement gives (migration 0004): `msg_` and 32 hex digits. */
export function createWebhookId(): string {
  return `msg_${randomUUID().replaceAll('-', '')}`
}

/** Creates a user with a fresh webhook secret; resolves to the secret. */
export async function insertUser(db: Db, id: string): Promise<string> {
  const secret = createWebhookSecret()
  await db.insertInto('users').values({ id, credit: 1000, webhook_secret: secret }).execute()
  return secret
}

/** What {@link insertDelivery} writes. */
export interface DeliveryFixture {
  userId: string
  url: string
  /** expires_at = now + this. @defaultValue 60000 */
  retryForMs?: number
  /** Also wake the senders of this schema, in the same transaction. */
  notifySchema?: string
  /** status of the row. @defaultValue pending */
  status?: 'pending' | 'dead'
}

/** A filled order and its pending callback, in one transaction as the trading code writes them. */
export async function insertDelivery(db: Db, fixture: DeliveryFixture): Promise<{ id: string; orderId: string; payload: string }> {
  const id = createWebhookId()
  const orderId = randomUUID()
  const payload = JSON.stringify({ type: 'order.filled', data: { id: orderId, user: fixture.userId, price: '10.0000' } })
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('orders')
      .values({
        id: orderId,
        user_id: fixture.userId,
        stock: 'stock1',
        side: 'buy',
        quantity: 1,
        status: 'filled',
        price: '10.0000',
        amount: '10.0000',
        callback_url: fixture.url,
        request_hash: 'test',
      })
      .execute()
    await trx
      .insertInto('webhook_deliveries')
      .values({
        id,
        order_id: orderId,
        user_id: fixture.userId,
        url: fixture.url,
        event_type: 'order.filled',
        payload,
        status: fixture.status ?? 'pending',
        expires_at: sql<Date>`now() + ${fixture.retryForMs ?? 60_000}::double precision * interval '1 millisecond'`,
      })
      .execute()
    if (fixture.notifySchema !== undefined) {
      await sql`select pg_notify(${notifyChannel('webhooks', fixture.notifySchema)}, '')`.execute(trx)
    }
  })
  return { id, orderId, payload }
}

/** One request the receiver got. */
export interface ReceivedCallback {
  headers: IncomingHttpHeaders
  body: string
  /** performance.now() when the body was complete. */
  at: number
  /** The status answered, or undefined while held (or when the connection died first). */
  status: number | undefined
}

/** How the receiver answers a request: a status, or `hold` to keep it waiting. */
export type Answer = number | 'hold'

/** A local endpoint recording every callback. */
export interface Receiver {
  /** `http://127.0.0.1:<port>/cb`. */
  url: string
  received: ReceivedCallback[]
  /** Requests waiting for an answer (answer them with {@link Receiver.release}). */
  readonly held: number
  /** Most requests open at once so far. */
  readonly maxOpen: number
  /** Decides the answer of each request; set it at any time. @defaultValue 200 */
  answer: (callback: ReceivedCallback) => Answer
  /** Answers every held request with `status`. */
  release(status?: number): void
  /** The requests carrying this `webhook-id`. */
  byId(id: string): ReceivedCallback[]
  close(): Promise<void>
}

/** Starts a receiver on 127.0.0.1 and a free port. */
export async function startReceiver(): Promise<Receiver> {
  const held = new Set<{ callback: ReceivedCallback; res: ServerResponse }>()
  let open = 0
  let maxOpen = 0
  const receiver: Receiver = {
    url: '',
    received: [],
    get held() {
      return held.size
    },
    get maxOpen() {
      return maxOpen
    },
    answer: () => 200,
    release(status = 200) {
      for (const entry of held) {
        entry.callback.status = status
        entry.res.statusCode = status
        entry.res.end()
        held.delete(entry)
      }
    },
    byId: (id) => receiver.received.filter((r) => r.headers['webhook-id'] === id),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  const server = createServer((req, res) => {
    open++
    maxOpen = Math.max(maxOpen, open)
    res.on('close', () => {
      open--
    })
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const callback: ReceivedCallback = {
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: performance.now(),
        status: undefined,
      }
      receiver.received.push(callback)
      const answer = receiver.answer(callback)
      if (answer === 'hold') {
        const entry = { callback, res }
        held.add(entry)
        res.on('close', () => held.delete(entry))
        return
      }
      callback.status = answer
      res.statusCode = answer
      res.end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`
  return receiver
}

/** The headers of a received callback as `standardwebhooks` takes them. */
export function webhookHeadersOf(callback: ReceivedCallback): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    headers[name] = String(callback.headers[name])
  }
  return headers
}
