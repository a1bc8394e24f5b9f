/**
 * The service shape, in process against the real Redis and PostgreSQL: options before
 * connections, what is declared is opened and closed after the work, the heartbeat lives
 * while the service runs, and outcomes become exit codes.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { sql } from 'kysely'
import { UsageError } from '../../src/platform/command.ts'
import { FatalError } from '../../src/platform/retry.ts'
import { heartbeatKey, readHeartbeats } from '../../src/platform/heartbeat.ts'
import { createMetrics, startMetricsServer } from '../../src/platform/metrics.ts'
import { REPORTS_STREAM, type ServiceReport } from '../../src/platform/reports.ts'
import { createServiceShape } from '../../src/platform/service.ts'
import { type Database, migrations } from '../../src/database.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, openTestRedis, testEnv } from '../helpers/infra.ts'
import { declaredType, sampleValue, scrapeMetrics, seriesTotal } from '../helpers/prometheus.ts'

/** Bourse's own shape: `needs.db` opens a pool migrated with every table. */
const defineService = createServiceShape<Database>({ migrations })

let redis: Redis
let testDb: TestDb

before(async () => {
  redis = await openTestRedis()
  testDb = await openTestDb()
})
after(async () => {
  await testDb.close()
  await closeTestRedis(redis)
})

const env = () => testEnv({ ...testDb.env, HEARTBEAT_INTERVAL_MS: '100', LOG_LEVEL: 'silent' })

test('a bad option is exit 2 before anything is opened', async () => {
  let opened = false
  const service = defineService({
    spec: { name: 'probe', usage: '', description: 'probe', options: { n: { type: 'string' } }, help: {} },
    parse: ({ values }) => {
      if (values.n !== '1') throw new UsageError('--n must be 1')
      return {}
    },
    needs: () => {
      opened = true
      return { redis: {} }
    },
    start: async () => 0,
  })
  assert.equal(await service.runWith(['--n', '2'], { env: env() }), 2)
  assert.equal(await service.runWith(['--nope'], { env: env() }), 2)
  assert.equal(opened, false)
})

test('a bad environment is exit 78, naming the variable', async () => {
  const service = defineService({
    spec: { name: 'probe', usage: '', description: 'probe', options: {}, help: {} },
    start: async () => 0,
  })
  const written: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write
  try {
    assert.equal(await service.runWith([], { env: { ...env(), HEARTBEAT_INTERVAL_MS: 'soon' } }), 78)
  } finally {
    process.stderr.write = write
  }
  assert.match(written.join(''), /HEARTBEAT_INTERVAL_MS/)
})

test('a command gets what it declared, still open while its own close steps run, and closed after', async () => {
  let seen: { redis: Redis; closedWithRedisOpen?: boolean } | undefined
  const service = defineService({
    spec: { name: 'probe', usage: '', description: 'probe', options: {}, help: {} },
    needs: () => ({ redis: {}, db: { max: 1 } }),
    async start({ redis: conn, db, lifecycle }) {
      const row = await sql<{ n: number }>`select count(*)::int as n from users`.execute(db)
      assert.equal(row.rows[0]!.n, 0, 'migrated schema')
      assert.equal(await conn.ping(), 'PONG')
      const probe: { redis: Redis; closedWithRedisOpen?: boolean } = { redis: conn }
      lifecycle.onClose('work', () => {
        probe.closedWithRedisOpen = conn.status === 'ready'
      })
      seen = probe
      return 3
    },
  })
  assert.equal(await service.runWith([], { env: env() }), 3)
  assert.equal(seen?.closedWithRedisOpen, true, 'the work closes before its connections')
  await assert.rejects(seen!.redis.ping(), 'Redis closed at the end')
})

test('a daemon beats a heartbeat with its status while it runs, removes it when done, and a failure is exit 1', async () => {
  const status = { handled: 0 }
  let beatWhileRunning: Awaited<ReturnType<typeof readHeartbeats>> = []
  const service = defineService({
    spec: { name: 'beating', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    async start() {
      const done = (async () => {
        for (let i = 0; i < 100; i++) {
          status.handled = i + 1
          beatWhileRunning = await readHeartbeats(redis)
          if (beatWhileRunning.some((b) => Number(b.status.handled) >= 3)) return
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })()
      return { done, status: () => ({ ...status }) }
    },
  })
  assert.equal(await service.runWith(['--instance-id', 'one'], { env: env() }), 0)
  const beat = beatWhileRunning.find((b) => b.service === 'beating')
  assert.ok(beat, 'a heartbeat while running')
  assert.equal(beat.instance, 'one')
  assert.equal(beat.pid, process.pid)
  assert.equal(beat.ttl_ms, 300)
  assert.ok(Number(beat.status.handled) >= 3, 'later beats carry the status as it is then')
  assert.equal(await redis.exists(heartbeatKey('beating', 'one')), 0, 'removed on a clean end')

  const failing = defineService({
    spec: { name: 'failing', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    start: async () => ({ done: Promise.reject(new Error('broken')) }),
  })
  assert.equal(await failing.runWith([], { env: env() }), 1)
})

test('a long-running service reports how it ended: stopped when its work is done, failed when it fails, start_failed when its start throws', async () => {
  await redis.del(REPORTS_STREAM)
  const finishing = defineService({
    spec: { name: 'finishing', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    start: async () => ({ done: Promise.resolve() }),
  })
  const failing = defineService({
    spec: { name: 'failing', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    start: async () => ({ done: Promise.reject(new Error('broken')) }),
  })
  const refusing = defineService({
    spec: { name: 'refusing', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    start: async () => {
      throw new FatalError('cannot start')
    },
  })
  const oneShot = defineService({
    spec: { name: 'one-shot', usage: '', description: 'probe', options: {}, help: {} },
    needs: () => ({ redis: {} }),
    start: async () => 0,
  })
  const quietly = async (run: () => Promise<number>) => {
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = (() => true) as typeof process.stderr.write
    try {
      return await run()
    } finally {
      process.stderr.write = write
    }
  }
  assert.equal(await finishing.runWith(['--instance-id', 'f1'], { env: env() }), 0)
  assert.equal(await failing.runWith(['--instance-id', 'f2'], { env: env() }), 1)
  assert.equal(await quietly(() => refusing.runWith(['--instance-id', 'f3'], { env: env() })), 65)
  assert.equal(await oneShot.runWith([], { env: env() }), 0)
  const reports = (await redis.xrange(REPORTS_STREAM, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as ServiceReport)
  assert.deepEqual(
    reports.map((r) => [r.service, r.instance, r.level, r.status, r.data.reason, r.data.error]),
    [
      ['finishing', 'f1', 'info', 'started', undefined, undefined],
      ['finishing', 'f1', 'info', 'stopped', 'done', undefined],
      ['failing', 'f2', 'info', 'started', undefined, undefined],
      ['failing', 'f2', 'error', 'failed', 'done', 'broken'],
      ['refusing', 'f3', 'error', 'start_failed', 'done', 'cannot start'],
    ],
    'a command that is not long-running files none',
  )
})

test('a FatalError from the work or the start stops the service with exit 65 and its message on stderr', async () => {
  const working = defineService({
    spec: { name: 'fatal-work', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    start: async () => ({ done: Promise.reject(new FatalError('the store lost its data: run the recovery')) }),
  })
  const starting = defineService({
    spec: { name: 'fatal-start', usage: '', description: 'probe', options: {}, help: {} },
    needs: () => ({ redis: {} }),
    start: async () => {
      throw new FatalError('refusing to start: run the recovery')
    },
  })
  const written: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write
  try {
    assert.equal(await working.runWith([], { env: env() }), 65)
    assert.equal(await starting.runWith([], { env: env() }), 65)
  } finally {
    process.stderr.write = write
  }
  assert.match(written.join(''), /bourse fatal-work: the store lost its data: run the recovery/)
  assert.match(written.join(''), /bourse fatal-start: refusing to start: run the recovery/)
})

test('metrics: a service registry with process metrics and stats read at scrape time, served at /metrics', async () => {
  const metrics = createMetrics({ labels: { service: 'probe' } })
  const stats = { applied: 0, inFlight: 0 }
  metrics.exposeStats('probe', stats, ['inFlight'])
  const server = await startMetricsServer(metrics.registry, 0)
  try {
    const url = `${server.url}/metrics`
    const first = await scrapeMetrics(url)
    assert.ok(first.series.has('process_cpu_user_seconds_total'), 'process metrics')
    assert.ok(first.series.has('bourse_probe_applied_total'))
    assert.equal(seriesTotal(first.series, 'bourse_probe_applied_total', { service: 'probe' }), 0)
    stats.applied = 42
    stats.inFlight = 7
    const second = await scrapeMetrics(url)
    assert.equal(seriesTotal(second.series, 'bourse_probe_applied_total'), 42)
    assert.equal(seriesTotal(second.series, 'bourse_probe_in_flight'), 7)
    assert.equal(declaredType(second.text, 'bourse_probe_applied_total'), 'counter')
    assert.equal(declaredType(second.text, 'bourse_probe_in_flight'), 'gauge')
    // Labelled totals a service keeps itself, read at each scrape.
    const records = new Map([['a', 1]])
    metrics.counterFrom('bourse_probe_calls_total', 'calls', ['peer'], () => [...records].map(([peer, n]) => [{ peer }, n]))
    metrics.gaugeFrom('bourse_probe_age_seconds', 'age', ['peer'], () => [...records].map(([peer, n]) => [{ peer }, n * 10]))
    records.set('a', 3).set('b', 2)
    const third = await scrapeMetrics(url)
    assert.equal(sampleValue(third.series, 'bourse_probe_calls_total', { peer: 'a' }), 3)
    assert.equal(sampleValue(third.series, 'bourse_probe_calls_total', { peer: 'b' }), 2)
    assert.equal(sampleValue(third.series, 'bourse_probe_age_seconds', { peer: 'b' }), 20)
    assert.equal(declaredType(third.text, 'bourse_probe_calls_total'), 'counter')
    records.delete('a')
    const fourth = await scrapeMetrics(url)
    assert.equal(fourth.series.get('bourse_probe_calls_total')?.length, 1, 'a peer gone from the records is gone from the scrape')
    assert.equal((await fetch(`${server.url}/other`)).status, 404)
  } finally {
    await server.close()
  }
})

test('a metrics port already taken is a start that failed (exit 1), before the work starts', async () => {
  const taken = await startMetricsServer(createMetrics({ processMetrics: false }).registry, 0)
  let started = false
  const service = defineService({
    spec: { name: 'probe-port', usage: '', description: 'probe', options: {}, help: {} },
    daemon: true,
    async start() {
      started = true
      return { done: Promise.resolve() }
    },
  })
  try {
    const port = new URL(taken.url).port
    assert.equal(await service.runWith(['--metrics-port', port], { env: env() }), 1)
    assert.equal(started, false)
    assert.equal(await service.runWith(['--metrics-port', 'x'], { env: env() }), 2)
  } finally {
    await taken.close()
  }
})
