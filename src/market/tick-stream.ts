/**
 * Fan-out of the tick stream (`bourse:ticks`, written by the apply script) to the API's
 * Server-Sent Events connections: one blocking XREAD on a connection of its own serves
 * every subscriber of the process, however many there are.
 */
import type { Logger } from '../platform/logger.ts'
import type { Redis } from '../platform/redis.ts'
import type { TickStreamEntry } from './market-data.repository.ts'
import { TICK_STREAM_KEY } from './stock-history.repository.ts'

/** A subscription: entries after `position` are passed to its listener as they come. */
export interface TickSubscription {
  /** The stream id the hub had read up to when the listener joined: later entries reach it live. */
  position: string
  unsubscribe(): void
}

/** The fan-out. */
export interface TickStreamHub {
  /** Adds a listener of every entry added after the returned position. */
  subscribe(listener: (entry: TickStreamEntry) => void): Promise<TickSubscription>
  /** Stops reading; idempotent. */
  close(): Promise<void>
}

/** Options of {@link createTickStreamHub}. */
export interface TickStreamHubOptions {
  /** Longest wait of one XREAD, in ms. @defaultValue 5000 */
  blockMs?: number
  /** Entries read at most per XREAD. @defaultValue 500 */
  count?: number
  /** Wait before reading again after a failed read, in ms. @defaultValue 1000 */
  retryMs?: number
}

/** Compares two stream ids (`ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map((x) => BigInt(x))
  const [bm = 0n, bs = 0n] = b.split('-').map((x) => BigInt(x))
  if (am !== bm) return am < bm ? -1 : 1
  return as === bs ? 0 : as < bs ? -1 : 1
}

/**
 * Creates the hub on `reader`, a connection it owns and closes (blocking reads hold it).
 * The reading runs while someone listens; it starts at the stream's newest id.
 */
export function createTickStreamHub(deps: { reader: Redis; log: Logger }, options: TickStreamHubOptions = {}): TickStreamHub {
  const { reader } = deps
  const log = deps.log.child({ component: 'tick-stream' })
  const blockMs = options.blockMs ?? 5000
  const count = options.count ?? 500
  const retryMs = options.retryMs ?? 1000
  const listeners = new Set<(entry: TickStreamEntry) => void>()
  let position: string | undefined
  let loop: Promise<void> | undefined
  /** Set while the reading runs (or starts): cleared in the same turn as the reading stops. */
  let ready: Promise<void> | undefined
  let closing: Promise<void> | undefined

  const newestId = async (): Promise<string> => {
    const last = (await reader.xrevrange(TICK_STREAM_KEY, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>
    return last[0]?.[0] ?? '0-0'
  }

  const read = async () => {
    while (listeners.size > 0 && !closing) {
      // A read started before the last listener left ends within blockMs.
      try {
        const reply = (await reader.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', TICK_STREAM_KEY, position!)) as
          | Array<[string, Array<[string, string[]]>]>
          | null
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          const map = new Map<string, string>()
          for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!)
          const entry = { id, stock: map.get('s') ?? '', data: map.get('d') ?? '' }
          position = id
          for (const listener of listeners) listener(entry)
        }
      } catch (err) {
        if (closing) return
        log.warn({ err }, 'reading the tick stream failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, retryMs))
      }
    }
    ready = undefined
  }

  return {
    async subscribe(listener) {
      if (closing) throw new Error('the tick stream hub is closed')
      // The listener joins first, so a reading about to stop for want of listeners goes on;
      // a new reading starts at the newest id, read before any entry is passed on.
      listeners.add(listener)
      ready ??= (async () => {
        position = await newestId()
        loop = read()
      })()
      try {
        await ready
      } catch (err) {
        listeners.delete(listener)
        ready = undefined
        throw err
      }
      return { position: position!, unsubscribe: () => listeners.delete(listener) }
    },
    close() {
      closing ??= (async () => {
        listeners.clear()
        reader.disconnect()
        await loop?.catch(() => {})
      })()
      return closing
    },
  }
}
