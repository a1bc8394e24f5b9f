/** What `bourse infra` knows about each local service (Kafka, Redis, PostgreSQL). */
import type { Config } from '../config.ts'
import type { Logger } from '../logger.ts'
import { type Endpoint, isLocalHost } from './net.ts'
import type { StopOutcome } from './processes.ts'

/** Thrown when a service cannot be started or prepared; `details` holds a log tail or tool output. */
export class InfraError extends Error {
  override name = 'InfraError'
  /** Extra text for the operator (log tail, tool output), printed below the message. */
  readonly details: string | undefined
  constructor(message: string, details?: string) {
    super(message)
    this.details = details?.trim() === '' ? undefined : details
  }
}

/**
 * Refuses to start a service whose endpoint is another machine: `product` is what to
 * start there, `variable` the setting that points elsewhere.
 */
export function assertLocalHost(endpoint: Endpoint, product: string, variable: string): void {
  if (!isLocalHost(endpoint.host)) {
    throw new InfraError(`${endpoint.host} is not this machine: start ${product} there, or point ${variable} here`)
  }
}

/** The dependencies of the local infrastructure code. */
export interface InfraDeps {
  /** Validated configuration (ports, BOURSE_HOME, topic). */
  config: Config
  /** Progress and unexpected failures go here (stderr). */
  log: Logger
  /** Aborts long waits (Ctrl-C). */
  signal?: AbortSignal
}

/** Proof that Bourse started a service: the pid when it is known. */
export interface StartedByBourse {
  /** The service's pid, when it can be read. */
  pid: number | undefined
}

/** What `down` did to one service, with the pid it signalled. */
export interface StopResult {
  /** `not-started-by-bourse`: left alone (found running, or nothing to stop). */
  outcome: StopOutcome | 'not-started-by-bourse'
  /** The pid that was signalled. */
  pid?: number
}

/** Data Bourse keeps for a service it runs, under BOURSE_HOME. */
export interface LocalData {
  /** A file or directory. */
  path: string
  /** What is lost with it, for the operator. */
  holds: string
}

/** One service that `bourse infra` can find, start and stop on this machine. */
export interface LocalService {
  /** Short name shown in the output (`kafka`, `redis`, `postgres`). */
  readonly name: string
  /** Where clients reach it, from the configuration. */
  readonly endpoint: Endpoint
  /** What `infra reset` deletes once the service is stopped; none: reset leaves it alone. */
  readonly data?: readonly LocalData[]
  /** Set when Bourse started the service and it is still running. */
  startedByBourse(): Promise<StartedByBourse | undefined>
  /** Starts it here and resolves once it accepts connections; throws {@link InfraError}. */
  start(options: { timeoutMs: number }): Promise<StartedByBourse>
  /** Stops it when Bourse started it; never touches a service it found running. */
  stop(): Promise<StopResult>
  /** Work once it is reachable (topic, database); resolves to lines for the operator. */
  prepare?(): Promise<string[]>
}
