/**
 * `bourse infra up` used to re-format the broker's data directory on every start, so
 * bringing a stopped or crashed broker back lost every message and committed offset.
 * The broker here is `bourse infra`'s own, on free ports with a BOURSE_HOME of the test's:
 * the jars come from the repository's BOURSE_HOME, linked in, never fetched.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  kafkaBrokerPaths,
  kafkaClusterId,
  kafkaJarsPresent,
  pomKafkaVersion,
} from '../../../src/platform/infra/kafka-broker.ts'
import { canConnect } from '../../../src/platform/infra/net.ts'
import { isProcessAlive, readPidFile } from '../../../src/platform/infra/processes.ts'
import { createAdmin, createConsumer, createProducer } from '../../../src/platform/kafka/clients.ts'
import { repoRoot, runCli, testConfig, testEnv, uniqueName, waitFor } from '../../helpers/infra.ts'
import { readTopic } from '../../helpers/topic-reader.ts'

const repoLibs = kafkaBrokerPaths(resolve(repoRoot, testConfig().BOURSE_HOME)).libs

/** A client port whose next port (the controller's) is free too, away from the shared broker. */
async function freeBrokerPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    if (!(await canConnect({ host: '127.0.0.1', port })) && !(await canConnect({ host: '127.0.0.1', port: port + 1 }))) {
      return port
    }
  }
  throw new Error('no free port pair')
}

/** A BOURSE_HOME of the test's own, with the repository's Kafka jars linked in. */
async function ownHome(): Promise<{ home: string; env: NodeJS.ProcessEnv; broker: string }> {
  if (!(await kafkaJarsPresent(repoLibs, await pomKafkaVersion()))) {
    throw new Error(`no Kafka jars in ${repoLibs}: run \`bourse infra up\` once`)
  }
  const home = await mkdtemp(join(tmpdir(), 'bourse-home-test-'))
  await mkdir(join(home, 'kafka'))
  await symlink(repoLibs, kafkaBrokerPaths(home).libs)
  const broker = `127.0.0.1:${await freeBrokerPort()}`
  return { home, broker, env: testEnv({ BOURSE_HOME: home, KAFKA_BROKERS: broker, LOG_LEVEL: 'warn' }) }
}

const exists = (path: string) => stat(path).then(() => true, () => false)

describe('the Kafka broker `bourse infra` runs', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  let broker: string

  before(async () => {
    ;({ home, env, broker } = await ownHome())
  })
  after(async () => {
    // Stops the broker this test started (its pid file is under the test's home only).
    await runCli(['infra', 'down'], env)
    await rm(home, { recursive: true, force: true })
  })

  const infra = async (action: string) => {
    const result = await runCli(['infra', action], env)
    assert.equal(result.code, 0, `infra ${action}:\n${result.stdout}${result.stderr}`)
    return result.stdout
  }

  const topic = uniqueName('keeps-data')
  const group = uniqueName('keeps-data-group')
  const sent = Array.from({ length: 20 }, (_, i) => `message-${i}`)

  /** The messages of the topic and the group's committed offsets, as the broker has them now. */
  const whatTheBrokerHolds = async () => {
    const admin = createAdmin({ brokers: [broker] })
    const reader = createConsumer({ brokers: [broker] }, uniqueName('keeps-data-reader'))
    try {
      const topics = await admin.listTopics()
      if (!topics.includes(topic)) return { topics, messages: undefined, committed: undefined }
      const messages = (await readTopic(topic, reader)).flat().map((r) => r.value)
      const [offsets] = await admin.listConsumerGroupOffsets({ groups: [group] })
      const committed = offsets?.topics.find((t) => t.name === topic)?.partitions.map((p) => [p.partitionIndex, p.committedOffset])
      return { topics, messages, committed }
    } finally {
      await reader.close()
      await admin.close()
    }
  }

  const expected = { messages: sent, committed: [[0, 12n]] }

  test('up formats the data directory once, then messages and committed offsets survive down, up', async () => {
    assert.match(await infra('up'), /^kafka\s+\S+\s+started \(pid \d+\)$/m)
    const admin = createAdmin({ brokers: [broker] })
    const producer = createProducer({ brokers: [broker] })
    try {
      await admin.createTopics({ topics: [topic], partitions: 1, replicas: 1 })
      await producer.send({ messages: sent.map((value) => ({ topic, key: 'k', value })) })
      await admin.alterConsumerGroupOffsets({
        groupId: group,
        topics: [{ name: topic, partitionOffsets: [{ partition: 0, offset: 12n }] }],
      })
    } finally {
      await producer.close()
      await admin.close()
    }
    const before = await whatTheBrokerHolds()
    assert.deepEqual({ messages: before.messages, committed: before.committed }, expected)
    const meta = await readFile(join(kafkaBrokerPaths(home).data, 'meta.properties'), 'utf8')
    assert.match(meta, new RegExp(`^cluster\\.id=${kafkaClusterId}$`, 'm'))

    assert.match(await infra('down'), /^kafka\s+\S+\s+stopped \(pid \d+\)$/m)
    assert.match(await infra('up'), /^kafka\s+\S+\s+started \(pid \d+\)$/m)
    const held = await whatTheBrokerHolds()
    assert.deepEqual({ messages: held.messages, committed: held.committed }, expected)
  })

  test('a broker killed with SIGKILL comes back with its messages and offsets', async () => {
    const pid = await readPidFile(kafkaBrokerPaths(home).pid)
    assert.ok(pid !== undefined && (await isProcessAlive(pid, 'kafka.Kafka')), 'the broker runs')
    process.kill(pid, 'SIGKILL')
    await waitFor(async () => !(await isProcessAlive(pid)), { timeoutMs: 10_000, what: 'the broker to die' })
    await waitFor(async () => !(await canConnect({ host: '127.0.0.1', port: Number(broker.split(':')[1]) })), {
      timeoutMs: 10_000,
      what: 'the port to close',
    })
    assert.match(await infra('up'), /^kafka\s+\S+\s+started \(pid \d+\)$/m)
    const held = await whatTheBrokerHolds()
    assert.deepEqual({ messages: held.messages, committed: held.committed }, expected)
  })

  test('reset stops the broker, deletes its data and says so; up then starts an empty broker', async () => {
    const data = kafkaBrokerPaths(home).data
    const out = await infra('reset')
    assert.match(out, /^kafka\s+\S+\s+stopped \(pid \d+\)$/m)
    assert.ok(out.includes(`deleted ${data}: every topic with its messages, and the consumer groups' committed offsets`), out)
    assert.match(out, /^postgres\s+\S+\s+left alone/m)
    assert.equal(await exists(data), false)
    assert.equal(await exists(kafkaBrokerPaths(home).libs), true, 'the jars stay')
    assert.equal(await canConnect({ host: '127.0.0.1', port: Number(broker.split(':')[1]) }), false)

    await infra('up')
    const held = await whatTheBrokerHolds()
    assert.equal(held.topics.includes(topic), false, `${topic} is gone: ${held.topics.join(', ')}`)
  })
})

describe('a data directory of another Kafka cluster', () => {
  test('up refuses it, keeps it and points at `infra reset`', async (t) => {
    const { home, env } = await ownHome()
    t.after(async () => {
      await runCli(['infra', 'down'], env)
      await rm(home, { recursive: true, force: true })
    })
    const data = kafkaBrokerPaths(home).data
    await mkdir(data)
    const meta = 'version=1\nnode.id=1\ncluster.id=c29tZW9uZS1lbHNlcy1jbHVz\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAA\n'
    await writeFile(join(data, 'meta.properties'), meta)
    const result = await runCli(['infra', 'up'], env)
    assert.equal(result.code, 1, result.stdout + result.stderr)
    assert.match(result.stderr, /^kafka .*failed: .*another Kafka cluster \(id c29tZW9uZS1lbHNlcy1jbHVz.*`bourse infra reset`/m)
    assert.equal(await readFile(join(data, 'meta.properties'), 'utf8'), meta, 'the data is kept')
  })
})
