/**
 * Graceful shutdown for a process: SIGTERM/SIGINT stop taking work, then run the
 * registered close steps in reverse order of registration (last opened, first closed),
 * each in its own try/catch. A second signal does not start a second shutdown; a hard
 * timeout exits non-zero. A process started with an IPC channel (`bin/bourse.js` runs the
 * CLI as such a child where the Node on PATH is older) shuts down the same way when its
 * parent goes, even by SIGKILL, which the parent cannot forward.
 */
import type { Logger } from './logger.ts'

/** A named cleanup step. */
type Step = { name: string; close: () => unknown }

/** Options for {@link createLifecycle}. */
export interface LifecycleOptions {
  /** Longest the whole shutdown may take before the process exits with code 1. @defaultValue 15000 */
  timeoutMs?: number
  /** Signals that start the shutdown. @defaultValue ['SIGTERM', 'SIGINT'] */
  signals?: NodeJS.Signals[]
}

/** Process lifecycle: register cleanup steps, wait for a stop. */
export interface Lifecycle {
  /** Registers a close step; steps run in reverse order of registration (after a shutdown began: at once, after it). */
  onClose(name: string, close: () => unknown): void
  /** Resolves when a shutdown was requested (signal or {@link Lifecycle.shutdown}). */
  readonly stopping: Promise<string>
  /** An AbortSignal that aborts when a shutdown starts: loops watch it to stop taking work. */
  readonly signal: AbortSignal
  /** Runs every close step once; later calls return the same promise. */
  shutdown(reason?: string): Promise<void>
}

/** A named step of a close: what it closes, and how. */
export type CloseStep = readonly [name: string, close: () => unknown]

/**
 * Runs close steps in order, each in its own try/catch: a step that fails is logged with
 * its name under `message`, and the next one still runs.
 */
export async function runCloseSteps(steps: readonly CloseStep[], log: Logger, message = 'close step failed'): Promise<void> {
  for (const [step, close] of steps) {
    try {
      await close()
    } catch (err) {
      log.error({ err, step }, message)
    }
  }
}

/** Creates the lifecycle of one process and installs the signal handlers. */
export function createLifecycle(log: Logger, options: LifecycleOptions = {}): Lifecycle {
  const steps: Step[] = []
  const controller = new AbortController()
  const timeoutMs = options.timeoutMs ?? 15_000
  let resolveStopping: (reason: string) => void = () => {}
  const stopping = new Promise<string>((resolve) => {
    resolveStopping = resolve
  })
  let closing: Promise<void> | undefined

  const shutdown = (reason = 'requested'): Promise<void> => {
    if (closing) return closing
    if (reason === 'done') log.debug('closing')
    else log.info({ reason }, 'shutting down')
    controller.abort(reason)
    resolveStopping(reason)
    const timer = setTimeout(() => {
      log.error({ timeoutMs }, 'shutdown timed out, exiting')
      process.exit(1)
    }, timeoutMs)
    timer.unref()
    closing = (async () => {
      await runCloseSteps(
        [...steps].reverse().map((step) => [step.name, step.close] as const),
        log,
      )
      clearTimeout(timer)
      for (const signal of signals) process.off(signal, onSignal)
      process.off('disconnect', onParentGone)
    })()
    return closing
  }

  const signals = options.signals ?? ['SIGTERM', 'SIGINT']
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      log.warn({ signal }, 'already shutting down')
      return
    }
    void shutdown(signal)
  }
  for (const signal of signals) process.on(signal, onSignal)

  // The parent's end of the channel closes when it dies, however it dies: without this a
  // supervisor killing the pid it tracks would leave the real service running. Unref'd,
  // the channel does not keep a finished command alive. A parent already gone before the
  // lifecycle existed shows as a channel that was there (`send`) but is disconnected.
  const onParentGone = () => {
    if (!closing) void shutdown('parent exited')
  }
  if (process.channel) {
    process.once('disconnect', onParentGone)
    process.channel.unref()
  } else if (typeof process.send === 'function' && !process.connected) {
    queueMicrotask(onParentGone)
  }

  return {
    onClose: (name, close) => {
      // A step opened after the shutdown began (a signal during start-up, while connections
      // were still being opened) is closed right after the others: it would otherwise keep
      // the process alive.
      if (closing) closing = closing.then(() => runCloseSteps([[name, close]], log))
      else steps.push({ name, close })
    },
    stopping,
    signal: controller.signal,
    shutdown,
  }
}
