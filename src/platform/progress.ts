/**
 * Progress of a long command: a one-line bar redrawn with `\r` on a TTY, or a plain log line
 * every few seconds otherwise (files and pipes get no control characters).
 */
import type { Logger } from './logger.ts'

/** Options for {@link createProgress}. */
export interface ProgressOptions {
  /** What is counted, shown before the bar and in log lines ("rows", "ticks"). */
  label: string
  /** Expected final count; 0 or less when unknown (no bar, only counts). */
  total: number
  /** Where the bar goes. @defaultValue process.stderr */
  stream?: NodeJS.WriteStream
  /** Logger for the periodic lines when `stream` is not a TTY; nothing is printed without one. */
  log?: Logger
  /** Least time between two redraws on a TTY, in ms. @defaultValue 100 */
  redrawMs?: number
  /** Time between two log lines when not a TTY, in ms. @defaultValue 5000 */
  logEveryMs?: number
}

/** A running progress display. */
export interface Progress {
  /** Reports the count done so far and an optional short note (for example "sent 12,000"). */
  update(done: number, note?: string): void
  /** Draws the final state and ends the line on a TTY; later calls do nothing. */
  finish(done: number, note?: string): void
}

const BAR_WIDTH = 30

/** Creates a progress display. */
export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr
  const tty = Boolean(stream.isTTY)
  const redrawMs = options.redrawMs ?? 100
  const logEveryMs = options.logEveryMs ?? 5000
  const started = Date.now()
  let last = 0
  let finished = false
  const format = new Intl.NumberFormat('en-US')

  const line = (done: number, note: string | undefined) => {
    const seconds = (Date.now() - started) / 1000
    // A rate over the first instants says little; show it once there is some history.
    const rate = seconds >= 0.5 ? ` ${format.format(Math.round(done / seconds))}/s` : ''
    const counts =
      options.total > 0 ? `${format.format(done)}/${format.format(options.total)}` : format.format(done)
    let bar = ''
    if (options.total > 0) {
      const share = Math.min(1, done / options.total)
      const filled = Math.round(share * BAR_WIDTH)
      bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(share * 100)).padStart(3)}% `
    }
    return `${options.label} ${bar}${counts}${rate}${note ? ` ${note}` : ''}`
  }

  return {
    update(done, note) {
      if (finished) return
      const now = Date.now()
      if (tty) {
        if (now - last < redrawMs) return
        last = now
        stream.write(`\r${line(done, note)}\x1b[K`)
      } else if (now - last >= logEveryMs) {
        if (last === 0) {
          last = now
          return
        }
        last = now
        options.log?.info({ done, total: options.total }, line(done, note))
      }
    },
    finish(done, note) {
      if (finished) return
      finished = true
      if (tty) stream.write(`\r${line(done, note)}\x1b[K\n`)
    },
  }
}
