/**
 * A Kafka broker of a test's own, which the test may kill and restart: one KRaft node
 * (as `bourse infra` runs it) on free ports, its data in a temporary directory that
 * survives restarts. It uses the jars `bourse infra up` fetched into `$BOURSE_HOME/kafka/libs`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import {
  kafkaBrokerPaths,
  kafkaJarsPresent,
  kafkaLog4j2Properties,
  kafkaServerProperties,
  pomKafkaVersion,
} from '../../src/platform/infra/kafka-broker.ts'
import { waitForPort } from '../../src/platform/infra/net.ts'
import { runTool, tailFile } from '../../src/platform/infra/processes.ts'
import { createAdmin } from '../../src/platform/kafka/clients.ts'
import { repoRoot, testConfig, waitFor } from './infra.ts'

/** A broker the test owns. */
export interface OwnKafka {
  /** `127.0.0.1:PORT`, for KAFKA_BROKERS. */
  broker: string
  /** SIGKILL: no clean shutdown, as in a crash. Resolves when the JVM is gone. */
  kill(): Promise<void>
  /** SIGSTOP: the broker hangs, its connections stay open and unanswered. */
  pause(): void
  /** SIGCONT after {@link OwnKafka.pause}. */
  resume(): void
  /** Starts the broker again on the same ports and data. Resolves when it accepts connections. */
  restart(): Promise<void>
  /** Kills the broker if running and deletes its data. */
  destroy(): Promise<void>
}

/** A free TCP port on 127.0.0.1 (free now; the broker takes it a moment later). */
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

/** Formats a data directory and starts a broker on it. */
export async function startOwnKafka(): Promise<OwnKafka> {
  const libs = kafkaBrokerPaths(resolve(repoRoot, testConfig().BOURSE_HOME)).libs
  if (!(await kafkaJarsPresent(libs, await pomKafkaVersion()))) {
    throw new Error(`no Kafka jars in ${libs}: run \`bourse infra up\` once`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'bourse-own-kafka-'))
  const port = await freePort()
  let controllerPort = await freePort()
  while (controllerPort === port) controllerPort = await freePort()
  const properties = join(dir, 'server.properties')
  const log4j = join(dir, 'log4j2.properties')
  const logFile = join(dir, 'broker.log')
  await writeFile(properties, kafkaServerProperties({ listener: { host: '127.0.0.1', port }, controllerPort, dataDir: join(dir, 'data') }))
  await writeFile(log4j, kafkaLog4j2Properties())
  const java = ['-Dlog4j2.configurationFile=' + log4j, '-cp', join(libs, '*')]
  // A base64url id may start with '-', which the tool's argument parser takes for an
  // option (one run in 64 failed so): draw again until it does not.
  let clusterId = randomBytes(16).toString('base64url')
  while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url')
  const format = await runTool('java', ['-Xmx256m', ...java, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', properties])
  if (format.code !== 0) throw new Error(`formatting the broker's data failed:\n${format.output}`)

  let child: ChildProcess | undefined
  const launch = async () => {
    const out = await open(logFile, 'a')
    try {
      const jvm = spawn('java', ['-Xms128m', '-Xmx512m', '-XX:+UseG1GC', '-Djava.awt.headless=true', ...java, 'kafka.Kafka', properties], {
        cwd: dir,
        stdio: ['ignore', out.fd, out.fd],
      })
      child = jvm
      let exited: string | undefined
      jvm.once('exit', (code, signal) => {
        exited = `the broker exited (${signal ?? `code ${code}`})`
      })
      const up = await waitForPort({ host: '127.0.0.1', port }, { timeoutMs: 90_000, giveUp: () => exited })
      if (!up) throw new Error('the broker did not accept connections within 90 s')
      // An open port is not a working broker yet: its controller may still be electing itself.
      const admin = createAdmin({ brokers: [`127.0.0.1:${port}`], clientId: 'own-kafka' })
      try {
        await waitFor(
          () =>
            admin.listTopics().then(
              () => true,
              () => exited !== undefined && Promise.reject(new Error(exited)),
            ),
          { timeoutMs: 60_000, intervalMs: 250, what: 'the broker to answer metadata requests' },
        )
      } finally {
        await admin.close()
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await tailFile(logFile)}`)
    } finally {
      await out.close()
    }
  }
  const kill = async () => {
    const jvm = child
    if (!jvm || jvm.exitCode !== null || jvm.signalCode !== null) return
    const exited = once(jvm, 'exit')
    jvm.kill('SIGKILL')
    await exited
  }

  const signal = (name: NodeJS.Signals) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error('the broker is not running')
    child.kill(name)
  }

  await launch()
  return {
    broker: `127.0.0.1:${port}`,
    kill,
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    restart: launch,
    async destroy() {
      await kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
