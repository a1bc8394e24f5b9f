/**
 * Placing orders (the seed's step 5): answered at once, verified later.
 *
 * Nothing accepted is lost: the order goes to Kafka (acknowledged by all in-sync
 * replicas) before the answer, and the message carries the whole order, so the verifier
 * creates the row itself if this process died before inserting it. With an
 * `Idempotency-Key` the order id is derived from (user, key), so a retry finds the order
 * (or, racing the first attempt, sends the very same order, which is executed once).
 */
import { hash, randomUUID } from 'node:crypto'
import type { BlockList } from 'node:net'
import type { Db } from '../database.ts'
import type { OrderRow } from './db/tables.ts'
import { BadRequest, Conflict, NotFound, ServiceUnavailable } from '../platform/http/errors.ts'
import type { StringProducer } from '../platform/kafka/clients.ts'
import type { KafkaReachability } from '../platform/kafka/reachability.ts'
import { IDEMPOTENCY_KEY, idempotentId } from '../platform/idempotency.ts'
import type { Logger } from '../platform/logger.ts'
import { findUser } from './accounts.repository.ts'
import { encodeOrderMessage, type OrderMessage, orderRowFromMessage } from './order-message.ts'
import { findOrder, insertOrder } from './orders.repository.ts'
import type { CreateOrderBody } from './trading.schemas.ts'
import { validateCallbackUrl } from './webhooks/callback-url.ts'

/** What placing an order returned. */
export interface PlacedOrder {
  order: OrderRow
  /** True when an earlier request with the same Idempotency-Key had placed it. */
  replayed: boolean
}

/** Orders service. */
export interface OrderService {
  /** Places an order; throws AppErrors (404 user, 400 callback, 409 key reuse, 503 broker down). */
  place(request: CreateOrderBody, idempotencyKey?: string): Promise<PlacedOrder>
}

/** Dependencies of {@link createOrderService}. */
export interface OrderServiceDeps {
  db: Db
  producer: StringProducer
  log: Logger
  /**
   * Whether the producer reaches the broker: while it is known to be down, an order is
   * refused (503) at once instead of after the producer's retries.
   * @defaultValue none: every order waits for its send
   */
  reachability?: KafkaReachability | undefined
}

/** Options of {@link createOrderService}. */
export interface OrderServiceOptions {
  /** The orders topic. */
  topic: string
  /** Networks callbacks may reach although private (tests: 127.0.0.1). */
  allowedNetworks?: BlockList
}

/** The order id an idempotency key stands for: a name-based UUID of (user, key). */
export function idempotentOrderId(user: string, key: string): string {
  return idempotentId('bourse-order', user, key)
}

/** The fingerprint telling a retry from a different request under the same key. */
export function requestHash(request: CreateOrderBody): string {
  const canonical = [request.user, request.stockname, request.side, request.quantity, request.callback_url ?? null]
  return hash('sha256', JSON.stringify(canonical), 'hex')
}

/** Creates the service. */
export function createOrderService(deps: OrderServiceDeps, options: OrderServiceOptions): OrderService {
  const { db, producer, log, reachability } = deps
  return {
    async place(request, idempotencyKey) {
      if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw new BadRequest('Idempotency-Key must be 1 to 255 visible ASCII characters', { field: 'headers.idempotency-key' })
      }
      const hash = requestHash(request)
      const id = idempotencyKey === undefined ? randomUUID() : idempotentOrderId(request.user, idempotencyKey)
      if (idempotencyKey !== undefined) {
        const existing = await findOrder(db, id)
        if (existing) {
          if (existing.request_hash !== hash) {
            throw new Conflict('this Idempotency-Key was used for a different order', { field: 'headers.idempotency-key' }, 'idempotency_key_reused')
          }
          return { order: existing, replayed: true }
        }
      }
      if (!(await findUser(db, request.user))) throw new NotFound(`user ${request.user} does not exist`, { field: 'body.user' })
      if (request.callback_url !== undefined) {
        const check = await validateCallbackUrl(request.callback_url, options.allowedNetworks)
        if (!check.ok) throw new BadRequest(`callback_url is refused: ${check.reason}`, { field: 'body.callback_url' }, 'invalid_callback_url')
      }
      const message: OrderMessage = {
        v: 1,
        id,
        user: request.user,
        stock: request.stockname,
        side: request.side,
        quantity: request.quantity,
        callback_url: request.callback_url ?? null,
        idempotency_key: idempotencyKey ?? null,
        request_hash: hash,
        created_at: new Date().toISOString(),
      }
      try {
        reachability?.assertReachable()
      } catch (err) {
        // The outage itself was logged once when it began; no line per refused order.
        throw new ServiceUnavailable('orders cannot be taken right now (the order queue is unreachable)', 5, err)
      }
      try {
        await producer.send({ messages: [{ topic: options.topic, key: id, value: encodeOrderMessage(message) }] })
      } catch (err) {
        log.error({ err, orderId: id }, 'could not send order to Kafka')
        throw new ServiceUnavailable('orders cannot be taken right now', 5, err)
      }
      const row = orderRowFromMessage(message)
      try {
        await insertOrder(db, row)
      } catch (err) {
        // The order is safe in Kafka; the verifier creates the row from the message.
        log.warn({ err, orderId: id }, 'order sent but not inserted; the verifier will create it')
      }
      const stored = await findOrder(db, id).catch(() => undefined)
      return { order: stored ?? materialize(row), replayed: false }
    },
  }
}

/** The row as it will be stored, for the rare answer given before it could be read back. */
function materialize(row: ReturnType<typeof orderRowFromMessage>): OrderRow {
  const at = new Date(String(row.created_at))
  return {
    ...row,
    quantity: String(row.quantity),
    callback_url: row.callback_url ?? null,
    idempotency_key: row.idempotency_key ?? null,
    reason: null,
    price: null,
    amount: null,
    created_at: at,
    updated_at: at,
    verification_started_at: null,
    finished_at: null,
  } as OrderRow
}
