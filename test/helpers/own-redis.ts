/**
 * A Redis server of a test's own, which the test may kill, flush and restart: `redis-server`
 * on a free port with append-only persistence (`appendfsync everysec`, as a production
 * Redis that must survive restarts runs), its data in a temporary directory that survives
 * restarts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { waitForPort } from '../../src/platform/infra/net.ts'
import { tailFile } from '../../src/platform/infra/processes.ts'
import { waitFor } from './infra.ts'

/** A Redis server the test owns. */
export interface OwnRedis {
  /** `redis://127.0.0.1:PORT/0`, for REDIS_URL. */
  url: string
  /** SIGKILL: no clean shutdown, as in a crash (what the last second wrote may be lost). Resolves when it is gone. */
  kill(): Promise<void>
  /** Starts the server again on the same port and data. Resolves once it has loaded its data and answers. */
  restart(): Promise<void>
  /** Kills the server if running and deletes its data. */
  destroy(): Promise<void>
}

/** A free TCP port on 127.0.0.1 (free now; the server takes it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (!address || typeof address !== 'object') throw new Error('no port')
  return address.port
}

/** Starts `redis-server` (from PATH) with append-only persistence in a new temporary directory. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'bourse-own-redis-'))
  const port = await freePort()
  const logFile = join(dir, 'redis.log')
  const url = `redis://127.0.0.1:${port}/0`
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--daemonize', 'no', '--protected-mode', 'no',
  ]
  let child: ChildProcess | undefined

  const launch = async () => {
    const out = await open(logFile, 'a')
    try {
      const server = spawn('redis-server', args, { cwd: dir, stdio: ['ignore', out.fd, out.fd] })
      child = server
      let exited: string | undefined
      server.once('exit', (code, signal) => {
        exited = `redis-server exited (${signal ?? `code ${code}`})`
      })
      const up = await waitForPort({ host: '127.0.0.1', port }, { timeoutMs: 30_000, giveUp: () => exited })
      if (!up) throw new Error(exited ?? 'redis-server did not accept connections within 30 s')
      // An open port may still answer LOADING while the append-only file is read back.
      const probe = new Redis(url, { maxRetriesPerRequest: 0, lazyConnect: true })
      try {
        await waitFor(() => probe.ping().then(() => true, () => exited !== undefined && Promise.reject(new Error(exited))), {
          timeoutMs: 30_000,
          intervalMs: 50,
          what: 'redis-server to load its data',
        })
      } finally {
        probe.disconnect()
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await tailFile(logFile)}`)
    } finally {
      await out.close()
    }
  }
  const kill = async () => {
    const server = child
    if (!server || server.exitCode !== null || server.signalCode !== null) return
    const exited = once(server, 'exit')
    server.kill('SIGKILL')
    await exited
  }

  await launch()
  return {
    url,
    kill,
    restart: launch,
    async destroy() {
      await kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
