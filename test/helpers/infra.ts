/**
 * Test namespaces on the real Redis and Kafka: each test file gets its own Redis
 * database (flushed before and after) and topics with a random suffix (deleted after).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { loadConfig, kafkaBrokers, type Config } from '../../src/platform/config.ts'
import { createAdmin } from '../../src/platform/kafka/clients.ts'

/** The repository root. */
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

const baseRedis = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0'

/** A Redis database index for tests (default 13); set BOURSE_TEST_REDIS_DB to move it. */
export const testRedisDb = Number(process.env.BOURSE_TEST_REDIS_DB ?? 13)

/** The Redis URL of the test database. */
export const testRedisUrl = baseRedis.replace(/\/\d+$/, '').replace(/\/$/, '') + `/${testRedisDb}`

/** A connection to the test database, flushed now. Close it with {@link closeTestRedis}. */
export async function openTestRedis(): Promise<Redis> {
  const redis = new Redis(testRedisUrl, { maxRetriesPerRequest: 3 })
  await redis.flushdb()
  return redis
}

/** Flushes and closes a test connection. */
export async function closeTestRedis(redis: Redis): Promise<void> {
  await redis.flushdb()
  await redis.quit()
}

/** The environment for services under test: the test Redis, quiet logs. */
export function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, REDIS_URL: testRedisUrl, LOG_LEVEL: 'warn', ...extra }
}

/** The validated config of {@link testEnv}. */
export function testConfig(extra: Record<string, string> = {}): Config {
  return loadConfig(testEnv(extra))
}

/** A topic name unique to this run. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`
}

/** Creates a topic for a test (on the test broker, or on `brokers`); returns a function deleting it (and its dead-letter topic). */
export async function createTestTopic(topic: string, partitions: number, brokers = kafkaBrokers(testConfig())): Promise<() => Promise<void>> {
  const admin = createAdmin({ brokers })
  await admin.createTopics({ topics: [topic], partitions, replicas: 1 })
  return async () => {
    try {
      // A topic another cleanup has just deleted can still be listed for a moment, and
      // deleting it again fails: delete one by one, and a failure only counts if the
      // topic does not go away.
      const mine = (await admin.listTopics()).filter((t) => t === topic || t.startsWith(`${topic}.`))
      for (const name of mine) {
        try {
          await admin.deleteTopics({ topics: [name] })
        } catch (err) {
          const gone = async () => !(await admin.listTopics()).includes(name)
          await waitFor(gone, { timeoutMs: 10_000, what: `topic ${name} to be deleted` }).catch(() => {
            throw err
          })
        }
      }
    } finally {
      await admin.close()
    }
  }
}

/** Starts `bourse <args>` as a real process (Node 24, the repo's CLI). */
export function startCli(args: string[], env: NodeJS.ProcessEnv = testEnv()): ChildProcess {
  return spawn(process.execPath, ['src/cli.ts', ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Runs `bourse <args>` to the end; resolves with its exit code and output. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = testEnv(),
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = startCli(args, env)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d
  })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
  return { code, signal, stdout, stderr }
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws). */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  { timeoutMs = 30_000, intervalMs = 50, what = 'condition' } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
