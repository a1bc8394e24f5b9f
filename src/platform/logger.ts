/** The one pino logger. Services take children of it (`log.child({ service })`). */
import { pino, type Logger } from 'pino'

export type { Logger }

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** pino level. @defaultValue info */
  level?: string
  /** Human-readable output. @defaultValue true when stderr is a TTY */
  pretty?: boolean
  /** Where JSON lines go. @defaultValue stderr (stdout stays free for command output) */
  destination?: NodeJS.WritableStream
}

/** Creates the process logger: JSON lines, or pretty lines on a TTY. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info'
  const pretty = options.pretty ?? Boolean(process.stderr.isTTY)
  if (pretty) {
    return pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' },
      },
    })
  }
  return pino({ level }, options.destination ?? pino.destination({ dest: 2, sync: true }))
}
