/**
 * Whether the Kafka broker can be reached, as the clients of one process see it, written
 * once: every producer and consumer a service opens is watched, each logs one warning when
 * it loses the broker and one when it has it back (never one per retry), the heartbeat
 * shows the state, and senders fail fast while it is down (see {@link KafkaReachability.assertReachable}).
 *
 * The clients say when to look, not what is true: @platformatic/kafka emits
 * `client:broker:disconnect` when a connection closes, `client:broker:failed` when one
 * cannot be opened and `client:broker:connect` when one is opened. A TCP connection alone
 * proves little (a hung broker's kernel still accepts them; one broker of several may be
 * down), so each of these events only starts a probe: a metadata request of the client
 * itself, retried once. Its answer decides: answered is reachable, failed is
 * unreachable. A client is probed once when it is watched, and while unreachable the
 * probe runs again every `probeIntervalMs`, so an idle client (an API producer without
 * requests) notices the broker is gone, and back, by itself.
 */
import type { MetadataOptions } from '@platformatic/kafka'
import type { Logger } from '../logger.ts'

/** Thrown by {@link KafkaReachability.assertReachable} while the broker is known to be down. */
export class KafkaUnreachableError extends Error {
  override name = 'KafkaUnreachableError'
  /** When the broker was found unreachable. */
  readonly since: Date
  constructor(since: Date) {
    super(`the Kafka broker is unreachable since ${since.toISOString()}`)
    this.since = since
  }
}

/** The events of a client this module listens to, and the request it probes with. */
export interface WatchedClient {
  readonly closed: boolean
  metadata(options: MetadataOptions): Promise<unknown>
  on(event: 'client:broker:connect' | 'client:broker:disconnect' | 'client:broker:failed' | 'client:close', listener: () => void): unknown
  off(event: 'client:broker:connect' | 'client:broker:disconnect' | 'client:broker:failed' | 'client:close', listener: () => void): unknown
}

/** What the heartbeat shows: `{ state: 'unreachable', since }` while the broker is down. */
export type KafkaReachabilityStatus = { state: 'reachable' } | { state: 'unreachable'; since: string }

/** Options of {@link createKafkaReachability}. */
export interface KafkaReachabilityOptions {
  /** Where the transitions are logged (warnings). */
  log: Logger
  /** Time between two probes while the broker is unreachable, in ms. @defaultValue 1000 */
  probeIntervalMs?: number
  /** How long a probe may go unanswered before it counts as failed, in ms. @defaultValue 10000 */
  probeTimeoutMs?: number
  /**
   * Called when the process as a whole loses the broker (the first watched client finds it
   * unreachable, with that client's error) and when it has it back (the last one reaches
   * it again): once per transition. @defaultValue none
   */
  onChange?: (reachable: boolean, err?: unknown) => void
}

/** The broker's reachability as the watched clients of a process see it. */
export interface KafkaReachability {
  /** False while at least one watched client cannot reach the broker. */
  readonly reachable: boolean
  /** The state for heartbeats and status output. */
  status(): KafkaReachabilityStatus
  /** Throws {@link KafkaUnreachableError} while the broker is known to be down: a send would only wait for its retries to fail. */
  assertReachable(): void
  /** Watches `client`, named `role` in the logs ('producer', 'consumer'), until it closes or {@link KafkaReachability.close}. */
  watch(client: WatchedClient, role: string): void
  /** Stops watching every client (and any probe timer); idempotent. */
  close(): void
}

/** One watched client's view. */
interface ClientView {
  /** Unreachable since when; undefined while reachable. */
  since: Date | undefined
  stop(): void
}

/** Creates a tracker; clients are added with {@link KafkaReachability.watch}. */
export function createKafkaReachability(options: KafkaReachabilityOptions): KafkaReachability {
  const probeIntervalMs = options.probeIntervalMs ?? 1000
  const probeTimeoutMs = options.probeTimeoutMs ?? 10_000
  const views = new Set<ClientView>()
  let closed = false

  /** The earliest `since` of the clients that cannot reach the broker. */
  const downSince = (): Date | undefined => {
    let since: Date | undefined
    for (const view of views) if (view.since && (!since || view.since < since)) since = view.since
    return since
  }

  return {
    get reachable() {
      return downSince() === undefined
    },
    status() {
      const since = downSince()
      return since ? { state: 'unreachable', since: since.toISOString() } : { state: 'reachable' }
    },
    assertReachable() {
      const since = downSince()
      if (since) throw new KafkaUnreachableError(since)
    },
    watch(client, role) {
      if (closed) return
      const log = options.log.child({ kafka: role })
      /** The probe in flight, counted: an answer to an earlier one (given up on) is ignored. */
      let probing: number | undefined
      let probes = 0
      let timer: NodeJS.Timeout | undefined
      let stopped = false
      const view: ClientView = { since: undefined, stop }

      const settle = (id: number, err: unknown) => {
        if (probing !== id) return
        probing = undefined
        clearTimeout(timer)
        timer = undefined
        // A client closing fails its requests: that is not the broker's doing.
        if (stopped || client.closed) return
        if (err === undefined) {
          if (view.since) {
            log.warn({ downMs: Date.now() - view.since.getTime() }, 'Kafka broker reachable again')
            view.since = undefined
            if (downSince() === undefined) options.onChange?.(true)
          }
          return
        }
        if (!view.since) {
          const wasReachable = downSince() === undefined
          view.since = new Date()
          log.warn({ err }, 'Kafka broker unreachable')
          if (wasReachable) options.onChange?.(false, err)
        }
        timer = setTimeout(probe, probeIntervalMs)
        timer.unref()
      }
      function probe() {
        if (probing !== undefined || stopped || client.closed) return
        const current = ++probes
        probing = current
        clearTimeout(timer)
        // The client's own request timeout normally answers first; this bounds a request
        // that is never answered at all.
        timer = setTimeout(() => settle(current, new Error(`no answer to a metadata request within ${probeTimeoutMs} ms`)), probeTimeoutMs)
        timer.unref()
        // One retry, on a new connection: a connection the broker closed while idle fails
        // the first attempt of a healthy cluster.
        client.metadata({ topics: [], forceUpdate: true, retries: 1 }).then(
          () => settle(current, undefined),
          (err: unknown) => settle(current, err ?? new Error('metadata request failed')),
        )
      }
      /**
       * Probes on the next turn: the pool emits `disconnect` before it forgets the closed
       * connection, and a request made from the listener would wait on that connection
       * (@platformatic/kafka 2.12 never answers it).
       */
      const probeSoon = () => {
        setImmediate(probe)
      }
      // While unreachable the timer probes anyway; a new connection is the sign to look at once.
      const onConnect = () => {
        if (view.since) probeSoon()
      }
      const onTrouble = () => {
        if (!view.since) probeSoon()
      }
      function stop() {
        if (stopped) return
        stopped = true
        clearTimeout(timer)
        client.off('client:broker:connect', onConnect)
        client.off('client:broker:disconnect', onTrouble)
        client.off('client:broker:failed', onTrouble)
        client.off('client:close', stop)
        views.delete(view)
      }
      client.on('client:broker:connect', onConnect)
      client.on('client:broker:disconnect', onTrouble)
      client.on('client:broker:failed', onTrouble)
      client.on('client:close', stop)
      views.add(view)
      // A first look, which also opens a connection: a client that has sent nothing yet
      // (a producer kept for dead letters) has none whose loss could tell it the broker is gone.
      probeSoon()
    },
    close() {
      closed = true
      for (const view of [...views]) view.stop()
    },
  }
}
