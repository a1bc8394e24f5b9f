import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  javaMajorVersion,
  kafkaBrokerPaths,
  kafkaEndpoint,
  kafkaJarsPresent,
  kafkaLog4j2Properties,
  kafkaServerProperties,
  pomKafkaVersion,
} from '../../../src/platform/infra/kafka-broker.ts'
import { serviceLine } from '../../../src/platform/infra/local-infra.ts'
import { canConnect, parseHostPort, urlEndpoint, waitForPort } from '../../../src/platform/infra/net.ts'
import {
  databaseTarget,
  ensureDatabase,
  quoteIdentifier,
} from '../../../src/platform/infra/postgres-cluster.ts'
import { isProcessAlive, runTool, stopProcess } from '../../../src/platform/infra/processes.ts'
import { runCli, testConfig, testEnv, uniqueName } from '../../helpers/infra.ts'

/** `key=value` lines as a map (comments skipped). */
const properties = (text: string) =>
  new Map(
    text
      .split('\n')
      .filter((line) => line.includes('=') && !line.startsWith('#'))
      .map((line) => [line.slice(0, line.indexOf('=')).trim(), line.slice(line.indexOf('=') + 1).trim()]),
  )

describe('kafkaServerProperties', () => {
  const text = kafkaServerProperties({
    listener: { host: '127.0.0.1', port: 19092 },
    controllerPort: 19093,
    dataDir: '/tmp/bourse/kafka/data',
  })
  const props = properties(text)

  test('runs one KRaft node as broker and controller on the configured ports', () => {
    assert.equal(props.get('process.roles'), 'broker,controller')
    assert.equal(props.get('node.id'), '1')
    assert.equal(props.get('controller.quorum.voters'), '1@127.0.0.1:19093')
    assert.equal(props.get('listeners'), 'PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093')
    assert.equal(props.get('advertised.listeners'), 'PLAINTEXT://127.0.0.1:19092')
    assert.equal(props.get('controller.listener.names'), 'CONTROLLER')
    assert.equal(props.get('inter.broker.listener.name'), 'PLAINTEXT')
    assert.equal(props.get('listener.security.protocol.map'), 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT')
    assert.equal(props.get('log.dirs'), '/tmp/bourse/kafka/data')
    assert.doesNotMatch(text, /\D909[23]\b/, 'no default port leaks in')
  })

  test('sizes internal topics for a single broker', () => {
    for (const key of [
      'offsets.topic.replication.factor',
      'offsets.topic.num.partitions',
      'transaction.state.log.replication.factor',
      'transaction.state.log.min.isr',
      'transaction.state.log.num.partitions',
      'share.coordinator.state.topic.replication.factor',
      'share.coordinator.state.topic.min.isr',
    ]) {
      assert.equal(props.get(key), '1', key)
    }
    assert.equal(props.get('group.initial.rebalance.delay.ms'), '0')
  })

  test('brackets an IPv6 listener', () => {
    const v6 = properties(
      kafkaServerProperties({ listener: { host: '::1', port: 9092 }, controllerPort: 9093, dataDir: '/d' }),
    )
    assert.equal(v6.get('listeners'), 'PLAINTEXT://[::1]:9092,CONTROLLER://[::1]:9093')
  })
})

test('javaMajorVersion reads old and new `java -version` formats', () => {
  assert.equal(javaMajorVersion('openjdk version "17.0.15" 2025-04-15'), 17)
  assert.equal(javaMajorVersion('java version "1.8.0_392"'), 8)
  assert.equal(javaMajorVersion('openjdk version "21" 2023-09-19'), 21)
  assert.equal(javaMajorVersion('no version here'), undefined)
})

test('the log4j2 configuration keeps the broker quiet', () => {
  const props = properties(kafkaLog4j2Properties())
  assert.equal(props.get('rootLogger.level'), 'warn')
  assert.equal(props.get('appender.console.type'), 'Console')
})

describe('endpoints', () => {
  test('parseHostPort reads host:port and bracketed IPv6', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:9092'), { host: '127.0.0.1', port: 9092 })
    assert.deepEqual(parseHostPort('kafka:29092'), { host: 'kafka', port: 29092 })
    assert.deepEqual(parseHostPort('[::1]:9092'), { host: '::1', port: 9092 })
  })

  test('parseHostPort rejects what is not host:port', () => {
    for (const bad of ['localhost', ':9092', 'host:', 'host:70000', 'host:0', 'a:b:9092', 'host:port']) {
      assert.throws(() => parseHostPort(bad), /host:port|port must be/, bad)
    }
  })

  test('urlEndpoint falls back to the default port', () => {
    assert.deepEqual(urlEndpoint('redis://127.0.0.1:6380/2', 6379), { host: '127.0.0.1', port: 6380 })
    assert.deepEqual(urlEndpoint('redis://redis', 6379), { host: 'redis', port: 6379 })
    assert.deepEqual(urlEndpoint('postgres://u:p@[::1]/bourse', 5432), { host: '::1', port: 5432 })
  })

  test('kafkaEndpoint is the first of KAFKA_BROKERS', () => {
    const config = testConfig({ KAFKA_BROKERS: 'localhost:19092,other:9092' })
    assert.deepEqual(kafkaEndpoint(config), { host: 'localhost', port: 19092 })
  })

  test('serviceLine aligns name, endpoint and text', () => {
    assert.equal(
      serviceLine({ name: 'kafka', endpoint: { host: '127.0.0.1', port: 9092 } }, 'running'),
      'kafka    127.0.0.1:9092  running',
    )
  })
})

describe('broker files', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bourse-kafka-test-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  test('live under $BOURSE_HOME/kafka, made absolute', () => {
    const paths = kafkaBrokerPaths('.bourse')
    assert.equal(paths.dir, resolve('.bourse', 'kafka'))
    assert.equal(paths.pid, resolve('.bourse', 'kafka', 'broker.pid'))
    assert.equal(paths.log, resolve('.bourse', 'kafka', 'broker.log'))
  })

  test('jars count as present only for the pom version with a log4j binding', async () => {
    const version = await pomKafkaVersion()
    assert.match(version, /^\d+\.\d+\.\d+/)
    assert.equal(await kafkaJarsPresent(join(dir, 'missing'), version), false)
    await writeFile(join(dir, `kafka_2.13-${version}.jar`), '')
    assert.equal(await kafkaJarsPresent(dir, version), false)
    await writeFile(join(dir, 'log4j-slf4j-impl-2.24.3.jar'), '')
    assert.equal(await kafkaJarsPresent(dir, version), true)
    assert.equal(await kafkaJarsPresent(dir, '0.0.1'), false)
  })
})

describe('ports and processes', () => {
  test('canConnect and waitForPort see a listening port, and not a closed one', async () => {
    const server: Server = createServer((socket) => socket.destroy())
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const address = server.address()
    assert.ok(address && typeof address === 'object')
    const endpoint = { host: '127.0.0.1', port: address.port }
    assert.equal(await canConnect(endpoint), true)
    assert.equal(await waitForPort(endpoint, { timeoutMs: 1_000 }), true)
    server.close()
    await once(server, 'close')
    assert.equal(await canConnect(endpoint), false)
    assert.equal(await waitForPort(endpoint, { timeoutMs: 300, intervalMs: 50 }), false)
    await assert.rejects(waitForPort(endpoint, { timeoutMs: 5_000, giveUp: () => 'it died' }), /it died/)
  })

  test('stopProcess leaves a process whose command line lacks the marker, then stops it', async () => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' })
    const exited = once(child, 'exit')
    const pid = child.pid
    assert.ok(pid !== undefined)
    assert.equal(await isProcessAlive(pid, 'sleep'), true)
    assert.equal(await stopProcess(pid, { timeoutMs: 5_000, marker: 'kafka.Kafka' }), 'not-running')
    assert.equal(await isProcessAlive(pid), true, 'a process that is not ours is never signalled')
    assert.equal(await stopProcess(pid, { timeoutMs: 5_000, marker: 'sleep' }), 'stopped')
    const [, signal] = await exited
    assert.equal(signal, 'SIGTERM')
    assert.equal(await isProcessAlive(pid), false)
  })
})

describe('the database of DATABASE_URL', () => {
  test('databaseTarget splits the database from the maintenance URL and the password', () => {
    assert.deepEqual(databaseTarget('postgres://u:p%40ss@db:5433/my%20db?sslmode=disable'), {
      database: 'my db',
      adminUrl: 'postgres://u@db:5433/postgres?sslmode=disable',
      password: 'p@ss',
    })
    assert.equal(databaseTarget('postgres://u@db').database, undefined)
    assert.equal(quoteIdentifier('a"b'), '"a""b"')
  })

  test('ensureDatabase creates it once, then finds it', async (t) => {
    const base = new URL(testConfig().DATABASE_URL)
    const name = uniqueName('bourse_infra_test').replaceAll('-', '_')
    base.pathname = `/${name}`
    const { adminUrl } = databaseTarget(base.toString())
    t.after(async () => {
      await runTool('psql', [
        '-X',
        '-q',
        '-d',
        adminUrl,
        '-c',
        `DROP DATABASE IF EXISTS ${quoteIdentifier(name)}`,
      ])
    })
    assert.equal(await ensureDatabase(base.toString()), `database ${name} created`)
    assert.equal(await ensureDatabase(base.toString()), `database ${name} exists`)
  })
})

test('`bourse infra status` reports the running Redis as reachable', async () => {
  const { code, stdout } = await runCli(['infra', 'status'], testEnv({ LOG_LEVEL: 'warn' }))
  const lines = stdout.trimEnd().split('\n')
  assert.deepEqual(
    lines.map((line) => line.split(/\s+/)[0]),
    ['kafka', 'redis', 'postgres'],
  )
  const redis = lines.find((line) => line.startsWith('redis '))
  assert.match(redis ?? '', /^redis\s+127\.0\.0\.1:6379\s+running\b/)
  assert.equal(code, lines.every((line) => /\srunning\b/.test(line)) ? 0 : 1)
})

test('`bourse infra` without an action is a usage error', async () => {
  const { code, stderr } = await runCli(['infra'], testEnv())
  assert.equal(code, 2)
  assert.match(stderr, /expected one of up, down, status, reset/)
})
