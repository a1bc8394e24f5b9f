/**
 * The redis-server `bourse infra up` starts (where no Redis runs) used to keep its data in
 * memory only, so a restart lost the price histories and the consumed offsets while the
 * Kafka broker kept its topics. The server here is `infra`'s own, on a free port, with a
 * BOURSE_HOME of the test's: the shared Redis is never touched.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { infraReset } from '../../../src/platform/infra/local-infra.ts'
import { createRedisServer, redisServerPaths } from '../../../src/platform/infra/redis-server.ts'
import { isProcessAlive } from '../../../src/platform/infra/processes.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { testConfig, waitFor } from '../../helpers/infra.ts'

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

describe('the redis-server `bourse infra` runs', () => {
  let home: string
  let url: string
  let service: ReturnType<typeof createRedisServer>
  const log = createLogger({ level: 'warn' })

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'bourse-home-test-'))
    url = `redis://127.0.0.1:${await freePort()}/0`
    service = createRedisServer({ config: testConfig({ REDIS_URL: url, BOURSE_HOME: home }), log })
  })
  after(async () => {
    await service.stop()
    await rm(home, { recursive: true, force: true })
  })

  /** Runs `use` on a connection to the server, closed after. */
  const withRedis = async <T>(use: (redis: Redis) => Promise<T>): Promise<T> => {
    const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true })
    try {
      await redis.connect()
      return await use(redis)
    } finally {
      redis.disconnect()
    }
  }

  test('keeps what a Lua script wrote across a crash (SIGKILL) and a restart', async () => {
    const { pid } = await service.start({ timeoutMs: 10_000 })
    assert.ok(pid !== undefined)
    // Like the price-updater: a history and its applied offset, written by one script.
    await withRedis((redis) =>
      redis.eval("redis.call('RPUSH', KEYS[1], ARGV[1]); redis.call('HSET', KEYS[2], '0', ARGV[2])", 2, 'history', 'offsets', '{"price":1}', '41'),
    )
    process.kill(pid, 'SIGKILL')
    await waitFor(async () => !(await isProcessAlive(pid)), { timeoutMs: 10_000, what: 'redis-server to die' })

    await service.start({ timeoutMs: 10_000 })
    assert.deepEqual(
      await withRedis(async (redis) => [await redis.lrange('history', 0, -1), await redis.hgetall('offsets')]),
      [['{"price":1}'], { 0: '41' }],
    )
  })

  test('infra reset stops it and deletes its data, saying so', async () => {
    const lines: string[] = []
    const ok = await infraReset({
      config: testConfig({ REDIS_URL: url, BOURSE_HOME: home }),
      log,
      services: [service],
      print: (line) => lines.push(line),
      printError: (text) => lines.push(text),
    })
    assert.equal(ok, true, lines.join('\n'))
    const data = redisServerPaths(home).appendOnly[0]!
    assert.match(lines[0] ?? '', /^redis\s+\S+\s+stopped \(pid \d+\)$/)
    assert.ok(lines.some((line) => line.includes(`deleted ${data}: the data of the redis-server bourse started`)), lines.join('\n'))
    assert.equal(await stat(data).then(() => true, () => false), false)

    await service.start({ timeoutMs: 10_000 })
    assert.equal(await withRedis((redis) => redis.exists('history', 'offsets')), 0)
  })
})
