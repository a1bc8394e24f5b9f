/**
 * Status changes of orders on Redis pub/sub, for the API's Server-Sent Events. Published
 * after each committed change; a subscriber reads the stored state after subscribing, so a
 * change between the two is never missed (at worst seen twice).
 */
import type { Redis } from '../platform/redis.ts'
import type { OrderView } from './trading.schemas.ts'

/** The channel of one order's status changes. */
export function orderChannel(orderId: string): string {
  return `bourse:orders:${orderId}`
}

/** Publishes an order's current view. */
export async function publishOrderStatus(redis: Redis, view: OrderView): Promise<void> {
  await redis.publish(orderChannel(view.order_id), JSON.stringify(view))
}

/** Order status subscriptions multiplexed on one Redis connection in subscriber mode. */
export interface OrderStatusHub {
  /** Calls `listener` with each published view of the order until the returned function is called. */
  subscribe(orderId: string, listener: (view: OrderView) => void): Promise<() => Promise<void>>
  close(): Promise<void>
}

/** One subscriber connection multiplexing the streams of one process. */
export function createOrderStatusHub(subscriber: Redis): OrderStatusHub {
  const listeners = new Map<string, Set<(view: OrderView) => void>>()
  subscriber.on('message', (channel: string, message: string) => {
    const set = listeners.get(channel)
    if (!set) return
    let view: OrderView
    try {
      view = JSON.parse(message) as OrderView
    } catch {
      return
    }
    for (const listener of set) listener(view)
  })
  return {
    async subscribe(orderId, listener) {
      const channel = orderChannel(orderId)
      let set = listeners.get(channel)
      if (!set) {
        listeners.set(channel, (set = new Set()))
        await subscriber.subscribe(channel)
      }
      set.add(listener)
      return async () => {
        const current = listeners.get(channel)
        if (!current) return
        current.delete(listener)
        if (current.size === 0) {
          listeners.delete(channel)
          await subscriber.unsubscribe(channel).catch(() => {})
        }
      }
    },
    async close() {
      listeners.clear()
      subscriber.disconnect()
    },
  }
}
