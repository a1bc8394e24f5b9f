/**
 * `bourse infra up | down | status | reset` over the local Kafka, Redis and PostgreSQL:
 * use what already listens, start what does not, stop only what Bourse started, and
 * delete only the data Bourse keeps for what it runs.
 */
import { stat, rm } from 'node:fs/promises'
import { createKafkaBroker } from './kafka-broker.ts'
import { type InfraDeps, InfraError, type LocalData, type LocalService } from './local-service.ts'
import { canConnect, formatEndpoint } from './net.ts'
import { createPostgresCluster } from './postgres-cluster.ts'
import { createRedisServer } from './redis-server.ts'

/** What the infra commands need besides config and logger. */
export interface InfraCommandDeps extends InfraDeps {
  /** Writes one result line for the operator (stdout). */
  print: (line: string) => void
  /** Writes one problem for the operator (stderr). */
  printError: (text: string) => void
  /** The services to manage. @defaultValue Kafka, Redis and PostgreSQL from the configuration */
  services?: LocalService[]
}

/** Kafka, Redis and PostgreSQL as configured. */
export function localServices(deps: InfraDeps): LocalService[] {
  return [createKafkaBroker(deps), createRedisServer(deps), createPostgresCluster(deps)]
}

/** One aligned output line: `kafka    127.0.0.1:9092  running`. */
export function serviceLine(service: Pick<LocalService, 'name' | 'endpoint'>, text: string): string {
  return `${service.name.padEnd(8)} ${formatEndpoint(service.endpoint).padEnd(14)}  ${text}`
}

const startedBy = (pid: number | undefined) =>
  pid === undefined ? 'started by bourse' : `started by bourse, pid ${pid}`

function reportFailure(deps: InfraCommandDeps, service: LocalService, err: unknown): void {
  if (err instanceof InfraError) {
    deps.printError(serviceLine(service, `failed: ${err.message}${err.details ? `\n${err.details}` : ''}`))
    return
  }
  deps.log.error({ err, target: service.name }, 'unexpected failure')
  deps.printError(serviceLine(service, `failed: ${err instanceof Error ? err.message : String(err)}`))
}

/**
 * Runs `step` on each service in order. A failure is reported and the next service still
 * gets its turn; an aborted `signal` stops before the next one. Resolves false when any
 * step failed or the signal aborted.
 */
async function eachService(
  deps: InfraCommandDeps,
  signal: AbortSignal | undefined,
  step: (service: LocalService) => Promise<void>,
): Promise<boolean> {
  let ok = true
  for (const service of deps.services ?? localServices(deps)) {
    if (signal?.aborted) return false
    try {
      await step(service)
    } catch (err) {
      ok = false
      reportFailure(deps, service, err)
    }
  }
  return ok
}

/** Options for {@link infraUp}. */
export interface InfraUpOptions {
  /** Longest wait for a started service to accept connections. @defaultValue 90000 */
  timeoutMs?: number
}

/**
 * Makes every service reachable: uses one that accepts connections, starts one that does
 * not, then prepares it (topic, database). Resolves false when any of them failed.
 */
export async function infraUp(deps: InfraCommandDeps, options: InfraUpOptions = {}): Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 90_000
  return eachService(deps, deps.signal, async (service) => {
    if (await canConnect(service.endpoint)) {
      const started = await service.startedByBourse()
      deps.print(
        serviceLine(
          service,
          started ? `already running (${startedBy(started.pid)})` : 'already running, using it',
        ),
      )
    } else {
      deps.log.info(
        { target: service.name, endpoint: formatEndpoint(service.endpoint) },
        'not reachable, starting it',
      )
      const started = await service.start({ timeoutMs })
      deps.print(
        serviceLine(service, started.pid === undefined ? 'started' : `started (pid ${started.pid})`),
      )
    }
    for (const line of (await service.prepare?.()) ?? []) deps.print(serviceLine(service, line))
  })
}

/** Stops the services Bourse started; leaves the others alone. Resolves false when a stop failed. */
export async function infraDown(deps: InfraCommandDeps): Promise<boolean> {
  return eachService(deps, undefined, async (service) => {
    const { outcome, pid } = await service.stop()
    const text = {
      stopped: `stopped (pid ${pid})`,
      killed: `killed after it ignored SIGTERM (pid ${pid})`,
      'not-running': 'was not running',
      'not-started-by-bourse': (await canConnect(service.endpoint))
        ? 'running, not started by bourse: left alone'
        : 'not running',
    }[outcome]
    deps.print(serviceLine(service, text))
  })
}

/**
 * Deletes the data Bourse keeps under BOURSE_HOME for the services it runs (the Kafka
 * broker's topics, messages and group offsets; its redis-server's data), after stopping
 * the ones it started, and prints each path it deleted with what it held. A service it
 * keeps no data for (PostgreSQL: the system's cluster) is left alone. Data is never
 * deleted while something still answers on the service's port: that may be a broker
 * still using it. Resolves false when any service could not be reset.
 */
export async function infraReset(deps: InfraCommandDeps): Promise<boolean> {
  return eachService(deps, undefined, async (service) => {
    if (!service.data || service.data.length === 0) {
      deps.print(serviceLine(service, 'left alone: bourse keeps no data of its own for it'))
      return
    }
    const present: LocalData[] = []
    for (const data of service.data) {
      if (await stat(data.path).then(() => true, () => false)) present.push(data)
    }
    const { outcome, pid } = await service.stop()
    if (outcome === 'stopped') deps.print(serviceLine(service, `stopped (pid ${pid})`))
    if (outcome === 'killed') deps.print(serviceLine(service, `killed after it ignored SIGTERM (pid ${pid})`))
    if (present.length === 0) {
      deps.print(serviceLine(service, 'no data under BOURSE_HOME to delete'))
      return
    }
    if (await canConnect(service.endpoint)) {
      throw new InfraError(
        `still answers on ${formatEndpoint(service.endpoint)} and bourse did not start it: stop it, then reset again (nothing was deleted; reset deletes ${present.map((d) => d.path).join(', ')})`,
      )
    }
    for (const data of present) {
      await rm(data.path, { recursive: true, force: true })
      deps.print(serviceLine(service, `deleted ${data.path}: ${data.holds}`))
    }
  })
}

/** Prints whether each service is reachable and whether Bourse started it. Resolves true when all are reachable. */
export async function infraStatus(deps: InfraCommandDeps): Promise<boolean> {
  let ok = true
  for (const service of deps.services ?? localServices(deps)) {
    const [reachable, started] = await Promise.all([canConnect(service.endpoint), service.startedByBourse()])
    ok &&= reachable
    const text = reachable
      ? `running${started ? ` (${startedBy(started.pid)})` : ''}`
      : `not reachable${started ? ` (${startedBy(started.pid)}, not answering)` : ''}`
    deps.print(serviceLine(service, text))
  }
  return ok
}
