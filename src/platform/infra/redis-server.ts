/**
 * A local redis-server for machines that have none running. It keeps its data in an
 * append-only file under `$BOURSE_HOME/redis`, as compose.yaml's Redis does: the price
 * histories and the consumed Kafka offsets live there, and the broker `infra up` starts
 * keeps its topics across restarts, so a Redis that forgot them would disagree with it.
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { assertLocalHost, type InfraDeps, InfraError, type LocalService, type StartedByBourse } from './local-service.ts'
import { urlEndpoint, waitForPort } from './net.ts'
import {
  isMissingProgram,
  livePidFromFile,
  removeFile,
  runTool,
  stopProcess,
  tailText,
} from './processes.ts'

const redisMarker = 'redis-server'

/** The files of the redis-server Bourse runs, under `$BOURSE_HOME/redis`. */
export interface RedisServerPaths {
  /** `$BOURSE_HOME/redis`, the server's working directory. */
  dir: string
  /** Written by redis-server itself; its presence means "started by Bourse". */
  pid: string
  /** The server's log file. */
  log: string
  /** The server's data: the append-only files (`appendonlydir` from Redis 7, `appendonly.aof` before). */
  appendOnly: string[]
}

/** The redis-server files under a Bourse home directory (made absolute). */
export function redisServerPaths(bourseHome: string): RedisServerPaths {
  const dir = resolve(bourseHome, 'redis')
  return { dir, pid: join(dir, 'redis.pid'), log: join(dir, 'redis.log'), appendOnly: [join(dir, 'appendonlydir'), join(dir, 'appendonly.aof')] }
}

/**
 * Arguments of `redis-server`: daemonized, on the configured port, persisted by the
 * append-only file (no RDB snapshots), as compose.yaml runs it. Each write is in the file
 * before its reply, so a crash of redis-server loses nothing; the file is fsynced every
 * second, so a crash of the machine may lose the last second, and then a batch's ticks
 * and its consumed offsets together (one script writes both), never one without the other.
 */
export function redisServerArgs(host: string, port: number, paths: RedisServerPaths): string[] {
  const settings: Array<[string, string]> = [
    ['daemonize', 'yes'],
    ['port', String(port)],
    ['bind', host === 'localhost' ? '127.0.0.1' : host],
    ['save', ''],
    ['appendonly', 'yes'],
    ['appendfsync', 'everysec'],
    ['dir', paths.dir],
    ['pidfile', paths.pid],
    ['logfile', paths.log],
  ]
  return settings.flatMap(([name, value]) => [`--${name}`, value])
}

/** Redis (REDIS_URL) as a {@link LocalService}. */
export function createRedisServer(deps: InfraDeps): LocalService {
  const endpoint = urlEndpoint(deps.config.REDIS_URL, 6379)
  const paths = redisServerPaths(deps.config.BOURSE_HOME)

  const startedByBourse = async (): Promise<StartedByBourse | undefined> => {
    const pid = await livePidFromFile(paths.pid, redisMarker)
    return pid === undefined ? undefined : { pid }
  }

  return {
    name: 'redis',
    endpoint,
    data: paths.appendOnly.map((path) => ({
      path,
      holds: 'the data of the redis-server bourse started (users, stocks, price histories, consumed offsets)',
    })),
    startedByBourse,
    async start({ timeoutMs }) {
      assertLocalHost(endpoint, 'Redis', 'REDIS_URL')
      await mkdir(paths.dir, { recursive: true })
      // A pid file left by a server that died (SIGKILL) names a dead pid: gone before the
      // start, so the pid read below can only be the new server's.
      if ((await livePidFromFile(paths.pid, redisMarker)) === undefined) await removeFile(paths.pid)
      const deadline = Date.now() + timeoutMs
      let result: Awaited<ReturnType<typeof runTool>>
      try {
        result = await runTool('redis-server', redisServerArgs(endpoint.host, endpoint.port, paths))
      } catch (err) {
        if (!isMissingProgram(err)) throw err
        throw new InfraError(
          'redis-server is not installed: install it (apt-get install redis-server) or set REDIS_URL',
        )
      }
      if (result.code !== 0)
        throw new InfraError(`redis-server failed (exit ${result.code})`, tailText(result.output))
      if (!(await waitForPort(endpoint, { timeoutMs, signal: deps.signal }))) {
        throw new InfraError(`redis-server did not accept connections; see ${paths.log}`)
      }
      // redis-server listens before it writes its pid file: wait for the file too, or a
      // start on a busy machine answers without the pid `infra down` needs.
      let pid = await livePidFromFile(paths.pid, redisMarker)
      while (pid === undefined && Date.now() < deadline) {
        if (deps.signal?.aborted) throw new InfraError('interrupted')
        await sleep(50)
        pid = await livePidFromFile(paths.pid, redisMarker)
      }
      if (pid === undefined) throw new InfraError(`redis-server wrote no pid file (${paths.pid}); see ${paths.log}`)
      deps.log.info({ port: endpoint.port, pid }, 'redis-server started')
      return { pid }
    },
    async stop() {
      const pid = await livePidFromFile(paths.pid, redisMarker)
      if (pid === undefined) {
        await removeFile(paths.pid)
        return { outcome: 'not-started-by-bourse' }
      }
      const outcome = await stopProcess(pid, { timeoutMs: 30_000, marker: redisMarker })
      await removeFile(paths.pid)
      return { outcome, pid }
    },
  }
}
