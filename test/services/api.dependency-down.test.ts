/**
 * Hardening: the API when PostgreSQL or Redis goes down or hangs under it. The real
 * `bourse api` process reaches both through TCP proxies the test cuts (connections closed,
 * new ones refused, as when the server died) or stalls (nothing answered, as when it
 * hangs), then restores. Before the fix a request needing
 * PostgreSQL got 500 and one needing Redis waited for Redis for minutes (ioredis kept it
 * for 20 reconnection attempts) and then got 500. Now each gets 503 with `Retry-After`
 * in bounded time (a hung one: after the query or command timeout), requests not needing
 * the lost dependency are still served, `/readyz` names the one that failed, and the API
 * recovers by itself when it is back.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { createApiToken } from '../../src/auth/index.ts'
import { createStockHistoryRepository } from '../../src/market/index.ts'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, testConfig, testEnv, testRedisDb, uniqueName, waitFor } from '../helpers/infra.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'

/** What a 503 may take here: the Redis command timeout given to the API below, and slack for a busy machine. */
const REDIS_COMMAND_TIMEOUT_MS = 500
const BOUND_MS = 5000

let testDb: TestDb
let redis: Awaited<ReturnType<typeof openTestRedis>>
let redisProxy: TcpProxy
let postgresProxy: TcpProxy
let api: ServiceProcess
let base: string
let headers: { authorization: string; 'content-type': string }

before(async () => {
  testDb = await openTestDb()
  redis = await openTestRedis()
  const [account] = await createAccounts(testDb.db, [{ id: 'user1', credit: 1000 }])
  await projectUser(redis, account!)
  await createStockHistoryRepository(redis).seedStock('stockx', { id: 1, price: [10], time: ['09:00'], performance: 0 })
  const token = (await createApiToken(testDb.db, { userId: 'user1' })).token
  headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }

  const config = testConfig()
  const redisUrl = new URL(config.REDIS_URL)
  const postgresUrl = new URL(config.DATABASE_URL)
  redisProxy = await startTcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) })
  postgresProxy = await startTcpProxy({ host: postgresUrl.hostname, port: Number(postgresUrl.port || 5432) })
  postgresUrl.port = String(postgresProxy.port)
  api = startService(
    ['api', '--port', '0'],
    testEnv({
      ...testDb.env,
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}/${testRedisDb}`,
      DATABASE_URL: postgresUrl.href,
      REDIS_COMMAND_TIMEOUT_MS: String(REDIS_COMMAND_TIMEOUT_MS),
      DATABASE_CONNECT_TIMEOUT_MS: '1000',
      DATABASE_QUERY_TIMEOUT_MS: '1000',
      // The token, checked once, stays trusted: the routes themselves meet the outage.
      AUTH_CACHE_MS: '600000',
      RATE_LIMIT_MAX: '100000',
      ORDERS_TOPIC: uniqueName('orders'),
      EVENTS_TOPIC: uniqueName('events'),
    }),
  )
  ;[, base] = (await api.waitForOutput(/api listening on (http:\/\/\S+) /, 60_000)) as unknown as [string, string]
})
after(async () => {
  await api?.kill()
  await redisProxy?.close()
  await postgresProxy?.close()
  await closeTestRedis(redis)
  await testDb.close()
})

interface Answer {
  status: number
  ms: number
  retryAfter: string | null
  code: string | undefined
}

async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
  const started = performance.now()
  const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined && { body: JSON.stringify(body) }) }).catch((err: unknown) => {
    // The API gone (it must not die of a lost dependency): say how, with what it printed last.
    const { exitCode, signalCode } = api.child
    const exit = exitCode === null && signalCode === null ? 'still running' : `exited (code ${exitCode}, signal ${signalCode})`
    throw new Error(`${method} ${path}: ${String(err)}; the API ${exit}; its last output:\n${api.output().slice(-4000)}`, { cause: err })
  })
  const text = await res.text()
  const code = res.status >= 400 ? (JSON.parse(text) as { error?: { code?: string } }).error?.code : undefined
  return { status: res.status, ms: performance.now() - started, retryAfter: res.headers.get('retry-after'), code }
}

const buyStock = () => call('POST', '/api/buy-stock', { user: 'user1', stockname: 'stockx', quantity: 1 })
const readAccount = () => call('GET', '/api/users/user1')

/** `/readyz`'s failing checks, once a fresh round of checks has run. */
async function failingChecks(): Promise<string[]> {
  const res = await fetch(`${base}/readyz`)
  const body = (await res.json()) as { checks: Record<string, Array<{ status: string }>> }
  return Object.entries(body.checks)
    .filter(([, [check]]) => check?.status === 'fail')
    .map(([name]) => name)
}

test('PostgreSQL down: 503 with Retry-After at once, /readyz names it, and the API recovers by itself', async () => {
  assert.equal((await readAccount()).status, 200)
  await postgresProxy.cut()
  try {
    const down = await readAccount()
    assert.equal(down.status, 503)
    assert.equal(down.code, 'service_unavailable')
    assert.ok(down.retryAfter !== null && Number(down.retryAfter) > 0, 'Retry-After is set')
    assert.ok(down.ms < BOUND_MS, `answered in ${Math.round(down.ms)} ms`)
    await waitFor(async () => (await failingChecks()).includes('postgres:responseTime'), { what: '/readyz to fail postgres' })
  } finally {
    await postgresProxy.restore()
  }
  await waitFor(async () => (await readAccount()).status === 200, { what: 'the account to be served again' })
  await waitFor(async () => (await failingChecks()).length === 0, { what: '/readyz to pass again' })
})

test('Redis down: BuyStock gets 503 with Retry-After in bounded time, PostgreSQL reads are still served, and it recovers', async () => {
  assert.equal((await buyStock()).status, 200)
  await redisProxy.cut()
  try {
    const outcomes = await Promise.all([buyStock(), buyStock(), buyStock()])
    for (const down of outcomes) {
      assert.equal(down.status, 503)
      assert.equal(down.code, 'service_unavailable')
      assert.ok(down.retryAfter !== null && Number(down.retryAfter) > 0, 'Retry-After is set')
      assert.ok(down.ms < BOUND_MS, `answered in ${Math.round(down.ms)} ms`)
    }
    // The rate limit counts in Redis and is skipped while it fails; the account is in PostgreSQL.
    assert.equal((await readAccount()).status, 200)
    await waitFor(async () => (await failingChecks()).includes('redis:responseTime'), { what: '/readyz to fail redis' })
  } finally {
    await redisProxy.restore()
  }
  await waitFor(async () => (await buyStock()).status === 200, { what: 'BuyStock to be served again' })
  await waitFor(async () => (await failingChecks()).length === 0, { what: '/readyz to pass again' })
})

/** Asserts a 503 for a dependency, with Retry-After, answered within the bound. */
function assertUnavailable(answer: Answer) {
  assert.equal(answer.status, 503)
  assert.equal(answer.code, 'service_unavailable')
  assert.ok(answer.retryAfter !== null && Number(answer.retryAfter) > 0, 'Retry-After is set')
  assert.ok(answer.ms < BOUND_MS, `answered in ${Math.round(answer.ms)} ms`)
}

test('PostgreSQL hung: 503 once the query timeout passes, and served again when it answers', async () => {
  assert.equal((await readAccount()).status, 200)
  postgresProxy.stall()
  try {
    assertUnavailable(await readAccount())
  } finally {
    postgresProxy.unstall()
  }
  await waitFor(async () => (await readAccount()).status === 200, { what: 'the account to be served again' })
})

test('Redis hung: BuyStock gets 503 once the command timeout passes, and is served again when it answers', async () => {
  assert.equal((await buyStock()).status, 200)
  redisProxy.stall()
  try {
    assertUnavailable(await buyStock())
  } finally {
    redisProxy.unstall()
  }
  await waitFor(async () => (await buyStock()).status === 200, { what: 'BuyStock to be served again' })
})
