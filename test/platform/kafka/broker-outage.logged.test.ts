/**
 * A broker outage is visible: a real `bourse verifier` process (a group consumer and a
 * producer) on a broker of the test's own, SIGKILLed and restarted. Each client logs one
 * warning when it loses the broker and one when it has it back, however many times it
 * retried meanwhile, and the heartbeat (in Redis and `bourse status`) shows the broker
 * unreachable, since when, for as long as it is down. Before, the outage went unlogged.
 * The service files one report when the process loses the broker and one when it has it back.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { type Heartbeat, heartbeatKey } from '../../../src/platform/heartbeat.ts'
import { REPORTS_STREAM, type ServiceReport } from '../../../src/platform/reports.ts'
import { openTestDb, type TestDb } from '../../helpers/db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv, uniqueName, waitFor } from '../../helpers/infra.ts'
import { type OwnKafka, startOwnKafka } from '../../helpers/own-kafka.ts'
import { type ServiceProcess, startService } from '../../helpers/processes.ts'

let kafka: OwnKafka | undefined
let testDb: TestDb | undefined
let redis: Redis | undefined
let verifier: ServiceProcess | undefined

before(async () => {
  kafka = await startOwnKafka()
  testDb = await openTestDb()
  redis = await openTestRedis()
})
after(async () => {
  await verifier?.kill()
  if (redis) await closeTestRedis(redis)
  await testDb?.close()
  await kafka?.destroy()
})

interface LogLine {
  level: number
  msg: string
  kafka?: string
  since?: string
}

/** The service's JSON log lines about the broker's reachability. */
function reachabilityLines(output: string): { down: LogLine[]; back: LogLine[] } {
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine)
  return {
    down: lines.filter((l) => l.msg === 'Kafka broker unreachable'),
    back: lines.filter((l) => l.msg === 'Kafka broker reachable again'),
  }
}

const roles = (lines: LogLine[]) => lines.map((l) => l.kafka).sort()

test('broker SIGKILLed and restarted: one warning per client each way, and the heartbeat shows the outage', async (t) => {
  assert.ok(kafka && testDb && redis)
  const instance = uniqueName('verifier')
  const env = testEnv({
    ...testDb.env,
    KAFKA_BROKERS: kafka.broker,
    ORDERS_TOPIC: uniqueName('orders-outage'),
    HEARTBEAT_INTERVAL_MS: '500',
  })
  verifier = startService(['verifier', '--group', uniqueName('verifier'), '--instance-id', instance], env)
  const beat = async () => {
    const value = await redis!.get(heartbeatKey('verifier', instance))
    return value === null ? undefined : (JSON.parse(value) as Heartbeat)
  }
  const kafkaState = async () => (await beat())?.status.kafka as { state: string; since?: string } | undefined

  // Up, with its partitions assigned (the lag is shown only then).
  await waitFor(async () => (await beat())?.status.lag !== undefined, { timeoutMs: 60_000, what: "the verifier's heartbeat with its partitions" })

  await kafka.kill()
  const killedAt = Date.now()
  try {
    await waitFor(() => reachabilityLines(verifier!.output()).down.length >= 2, { timeoutMs: 20_000, what: 'an unreachable warning from the consumer and the producer' })
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(roles(reachabilityLines(verifier.output()).down))}\n${verifier.output().slice(-1500)}`)
  }
  const down = await waitFor(async () => {
    const state = await kafkaState()
    return state?.state === 'unreachable' ? state : undefined
  }, { timeoutMs: 20_000, what: 'the heartbeat showing the broker unreachable' })
  const since = Date.parse(down.since!)
  assert.ok(since >= killedAt - 1000 && since <= Date.now(), `unreachable since ${down.since}`)
  const status = await runCli(['status', '--json', '--expect', ''], env)
  assert.equal(status.code, 0, status.stderr)
  const listed = (JSON.parse(status.stdout) as { instances: Heartbeat[] }).instances.find((b) => b.instance === instance)
  assert.deepEqual(listed?.status.kafka, { state: 'unreachable', since: down.since })

  // The outage goes on for several heartbeats (and many retries of the clients): no more warnings.
  const beatAt = (await beat())!.last_beat
  await waitFor(async () => {
    const last = (await beat())?.last_beat
    return last !== undefined && Date.parse(last) >= Date.parse(beatAt) + 2000
  }, { timeoutMs: 20_000, what: 'heartbeats during the outage' })
  assert.deepEqual(roles(reachabilityLines(verifier.output()).down), ['consumer', 'producer'])

  await kafka.restart()
  await waitFor(() => reachabilityLines(verifier!.output()).back.length >= 2, { timeoutMs: 30_000, what: 'a reachable-again warning from the consumer and the producer' })
  await waitFor(async () => (await kafkaState())?.state === 'reachable', { timeoutMs: 20_000, what: 'the heartbeat showing the broker reachable' })
  assert.deepEqual(await kafkaState(), { state: 'reachable' })

  const { down: downLines, back } = reachabilityLines(verifier.output())
  t.diagnostic(`outage of ${Math.round((Date.now() - killedAt) / 1000)} s: ${downLines.length} unreachable and ${back.length} reachable-again lines`)
  assert.deepEqual(roles(downLines), ['consumer', 'producer'], 'one unreachable warning per client')
  assert.deepEqual(roles(back), ['consumer', 'producer'], 'one reachable-again warning per client')
  assert.ok([...downLines, ...back].every((l) => l.level === 40), 'logged as warnings')
  assert.equal(await verifier.stop(), 0)

  // And the service's reports: one lost and one recovered for the process, though both of its clients lost the broker.
  const reports = (await redis.xrange(REPORTS_STREAM, '-', '+'))
    .map(([, fields]) => JSON.parse(fields[1]!) as ServiceReport)
    .filter((r) => r.instance === instance)
  assert.deepEqual(
    reports.map((r) => [r.level, r.status, r.data.dependency]),
    [
      ['info', 'started', undefined],
      ['error', 'dependency_lost', 'kafka'],
      ['info', 'dependency_recovered', 'kafka'],
      ['info', 'stopped', undefined],
    ],
  )
})
