/**
 * A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) run
 * from the jars on Maven Central, for machines without Docker. See infra/kafka/pom.xml.
 */
import { spawn } from 'node:child_process'
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { kafkaBrokers } from '../config.ts'
import { createAdmin, ensureTopic } from '../kafka/clients.ts'
import { assertLocalHost, type InfraDeps, InfraError, type LocalService, type StartedByBourse } from './local-service.ts'
import { canConnect, type Endpoint, formatEndpoint, parseHostPort, waitForPort } from './net.ts'
import {
  isMissingProgram,
  livePidFromFile,
  removeFile,
  runTool,
  stopProcess,
  tailFile,
  tailText,
} from './processes.ts'

/** The Maven project that fetches the broker's jars. */
export const kafkaPom = fileURLToPath(new URL('../../../infra/kafka/pom.xml', import.meta.url))

/**
 * The id the data directory is formatted with (base64url of `BourseLocalKafka`; compose.yaml
 * uses it too). A data directory holding another id was not made by `bourse infra up`,
 * so `up` refuses it rather than start a broker that would fail on it.
 */
export const kafkaClusterId = 'Qm91cnNlTG9jYWxLYWZrYQ'

/** Recognises our broker in `/proc/<pid>/cmdline`, so a recycled pid is never signalled. */
const brokerMarker = 'kafka.Kafka'

/** How long `down` waits for a clean shutdown before SIGKILL. */
const stopTimeoutMs = 30_000

/** The files of the broker Bourse runs, under `$BOURSE_HOME/kafka`. */
export interface KafkaBrokerPaths {
  /** `$BOURSE_HOME/kafka`. */
  dir: string
  /** The broker's jars (fetched by Maven). */
  libs: string
  /**
   * `log.dirs`: topics, messages, consumer group offsets. Kept across restarts (a broker
   * that crashed comes back with everything it had acknowledged); only `infra reset` deletes it.
   */
  data: string
  /** The broker configuration, rewritten on every start. */
  serverProperties: string
  /** The log4j2 configuration, rewritten on every start. */
  log4j: string
  /** The broker's own output (log4j and JVM). */
  log: string
  /** The pid of the broker Bourse started; its presence means "started by Bourse". */
  pid: string
}

/** The broker's files under a Bourse home directory (made absolute). */
export function kafkaBrokerPaths(bourseHome: string): KafkaBrokerPaths {
  const dir = resolve(bourseHome, 'kafka')
  return {
    dir,
    libs: join(dir, 'libs'),
    data: join(dir, 'data'),
    serverProperties: join(dir, 'server.properties'),
    log4j: join(dir, 'log4j2.properties'),
    log: join(dir, 'broker.log'),
    pid: join(dir, 'broker.pid'),
  }
}

/** What {@link kafkaServerProperties} needs. */
export interface KafkaServerSettings {
  /** Client listener (the first of KAFKA_BROKERS). */
  listener: Endpoint
  /** The KRaft controller's port, on the same host. */
  controllerPort: number
  /** `log.dirs`. */
  dataDir: string
}

/**
 * `server.properties` for one KRaft node acting as broker and controller. The single-node
 * overrides matter: with the defaults (replication factor 3, 50 offsets partitions, 3 s
 * rebalance delay) a lone broker fails to create internal topics or starts slowly.
 */
export function kafkaServerProperties(settings: KafkaServerSettings): string {
  const host = settings.listener.host.includes(':') ? `[${settings.listener.host}]` : settings.listener.host
  const client = `${host}:${settings.listener.port}`
  const controller = `${host}:${settings.controllerPort}`
  return `${[
    '# Written by `bourse infra up`; rewritten on every start.',
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@${controller}`,
    `listeners=PLAINTEXT://${client},CONTROLLER://${controller}`,
    `advertised.listeners=PLAINTEXT://${client}`,
    'inter.broker.listener.name=PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    `log.dirs=${settings.dataDir}`,
    'num.partitions=1',
    'auto.create.topics.enable=true',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
  ].join('\n')}\n`
}

/**
 * log4j2 configuration: warnings only, plus the lines saying the broker started. It
 * writes to stdout, which the CLI points at `broker.log` (with the JVM's own errors).
 */
export function kafkaLog4j2Properties(): string {
  return `${[
    'status = warn',
    'appender.console.type = Console',
    'appender.console.name = STDOUT',
    'appender.console.layout.type = PatternLayout',
    'appender.console.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = warn',
    'rootLogger.appenderRef.stdout.ref = STDOUT',
    'logger.started.name = kafka.server.KafkaRaftServer',
    'logger.started.level = info',
    'logger.version.name = org.apache.kafka.common.utils.AppInfoParser',
    'logger.version.level = info',
  ].join('\n')}\n`
}

/**
 * The cluster id a data directory was formatted with (`cluster.id` in its
 * `meta.properties`), or undefined when it was never formatted.
 */
export async function formattedClusterId(dataDir: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, 'meta.properties'), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const id = /^cluster\.id=(.*)$/m.exec(text)?.[1]?.trim()
  if (!id) throw new InfraError(`${join(dataDir, 'meta.properties')} has no cluster.id: run \`bourse infra reset\` to delete the broker's data`)
  return id
}

/** The Kafka version the pom asks for (`<kafka.version>`). */
export async function pomKafkaVersion(pom = kafkaPom): Promise<string> {
  const version = /<kafka\.version>\s*([^<\s]+)\s*<\/kafka\.version>/.exec(await readFile(pom, 'utf8'))?.[1]
  if (version === undefined) throw new InfraError(`no <kafka.version> in ${pom}`)
  return version
}

/** Whether the jars of that Kafka version (and a log4j binding) are in `libs`. */
export async function kafkaJarsPresent(libs: string, version: string): Promise<boolean> {
  let files: string[]
  try {
    files = await readdir(libs)
  } catch {
    return false
  }
  return files.includes(`kafka_2.13-${version}.jar`) && files.some((f) => f.startsWith('log4j-slf4j-impl-'))
}

/**
 * Fetches the broker's jars with Maven into `libs`. They land in a scratch directory
 * first and are moved in place only when Maven succeeded, so a failed fetch never
 * leaves a half-filled `libs` that looks complete.
 */
export async function fetchKafkaJars(libs: string, pom = kafkaPom): Promise<void> {
  const scratch = `${libs}.fetch-${process.pid}`
  await rm(scratch, { recursive: true, force: true })
  const args = ['-q', '-B', '-f', pom, 'dependency:copy-dependencies', '-DincludeScope=runtime']
  let result: Awaited<ReturnType<typeof runTool>>
  try {
    result = await runTool('mvn', [...args, `-DoutputDirectory=${scratch}`])
  } catch (err) {
    if (!isMissingProgram(err)) throw err
    throw new InfraError(
      `the Kafka jars are missing from ${libs} and Maven (mvn) is not installed: install it (apt-get install maven) and run again`,
    )
  }
  if (result.code !== 0) {
    await rm(scratch, { recursive: true, force: true })
    throw new InfraError(`mvn could not fetch the Kafka jars (exit ${result.code})`, tailText(result.output))
  }
  await rm(libs, { recursive: true, force: true })
  await rename(scratch, libs)
}

/** The major Java version in `java -version` output (`1.8.0` counts as 8). */
export function javaMajorVersion(output: string): number | undefined {
  const match = /version "(?:1\.)?(\d+)/.exec(output)
  return match?.[1] === undefined ? undefined : Number(match[1])
}

async function checkJava(): Promise<void> {
  const hint = 'Kafka 4 needs Java 17+ (apt-get install openjdk-17-jre-headless)'
  let result: Awaited<ReturnType<typeof runTool>>
  try {
    result = await runTool('java', ['-version'])
  } catch (err) {
    if (!isMissingProgram(err)) throw err
    throw new InfraError(`java is not installed: ${hint}`)
  }
  if (result.code !== 0) throw new InfraError('`java -version` failed', result.output)
  const major = javaMajorVersion(result.output)
  if (major !== undefined && major < 17) throw new InfraError(`java ${major} is too old: ${hint}`)
}

/** The first broker of KAFKA_BROKERS, the one `bourse infra` looks for or starts. */
export function kafkaEndpoint(config: InfraDeps['config']): Endpoint {
  const first = kafkaBrokers(config)[0]
  if (first === undefined) throw new InfraError('KAFKA_BROKERS is empty')
  return parseHostPort(first)
}

/** Options for {@link createKafkaBroker}. */
export interface KafkaBrokerOptions {
  /** The Maven project fetching the jars. @defaultValue infra/kafka/pom.xml of this repository */
  pom?: string
  /** JVM heap options. @defaultValue ['-Xms256m', '-Xmx768m'] */
  heap?: string[]
}

/** The Kafka broker as a {@link LocalService}: started detached, so it outlives the CLI. */
export function createKafkaBroker(deps: InfraDeps, options: KafkaBrokerOptions = {}): LocalService {
  const { config, log } = deps
  const endpoint = kafkaEndpoint(config)
  const paths = kafkaBrokerPaths(config.BOURSE_HOME)
  const pom = options.pom ?? kafkaPom
  const heap = options.heap ?? ['-Xms256m', '-Xmx768m']
  const log4jOption = `-Dlog4j2.configurationFile=${paths.log4j}`
  const classpath = join(paths.libs, '*')

  const startedByBourse = async (): Promise<StartedByBourse | undefined> => {
    const pid = await livePidFromFile(paths.pid, brokerMarker)
    return pid === undefined ? undefined : { pid }
  }

  const stopStarted = async (pid: number) => {
    const outcome = await stopProcess(pid, { timeoutMs: stopTimeoutMs, marker: brokerMarker })
    await removeFile(paths.pid)
    return outcome
  }

  const prepareFiles = async () => {
    await mkdir(paths.dir, { recursive: true })
    const version = await pomKafkaVersion(pom)
    if (!(await kafkaJarsPresent(paths.libs, version))) {
      log.info({ libs: paths.libs, version }, 'fetching the Kafka broker jars with Maven (first start only)')
      await fetchKafkaJars(paths.libs, pom)
      if (!(await kafkaJarsPresent(paths.libs, version))) {
        throw new InfraError(`mvn ran but ${paths.libs} has no kafka_2.13-${version}.jar`)
      }
    }
    const controllerPort = endpoint.port + 1
    if (await canConnect({ host: endpoint.host, port: controllerPort })) {
      throw new InfraError(
        `the controller port ${controllerPort} (client port + 1) is already taken: choose another KAFKA_BROKERS port`,
      )
    }
    await mkdir(paths.data, { recursive: true })
    await writeFile(
      paths.serverProperties,
      kafkaServerProperties({ listener: endpoint, controllerPort, dataDir: paths.data }),
    )
    await writeFile(paths.log4j, kafkaLog4j2Properties())
  }

  /**
   * Formats the data directory the first time only: formatting again would throw away
   * every topic, message and committed offset the broker holds.
   */
  const formatOnce = async () => {
    const found = await formattedClusterId(paths.data)
    if (found === kafkaClusterId) return
    if (found !== undefined) {
      throw new InfraError(
        `${paths.data} holds the data of another Kafka cluster (id ${found}, not ${kafkaClusterId}): run \`bourse infra reset\` to delete it, or set BOURSE_HOME elsewhere`,
      )
    }
    log.info({ data: paths.data }, 'formatting the broker data directory (first start)')
    await format()
  }

  // StorageTool calls System.exit, so it runs as its own process.
  const format = async () => {
    const args = ['-Xmx256m', log4jOption, '-cp', classpath, 'kafka.tools.StorageTool', 'format']
    const result = await runTool('java', [...args, '-t', kafkaClusterId, '-c', paths.serverProperties], {
      cwd: paths.dir,
    })
    if (result.code !== 0) throw new InfraError(`formatting ${paths.data} failed`, tailText(result.output))
  }

  const launch = async (timeoutMs: number): Promise<number> => {
    const out = await open(paths.log, 'w')
    let exited: string | undefined
    let pid: number | undefined
    try {
      const jvm = [
        ...heap,
        '-XX:+UseG1GC',
        '-XX:MaxGCPauseMillis=20',
        '-Djava.awt.headless=true',
        log4jOption,
      ]
      const child = spawn('java', [...jvm, '-cp', classpath, 'kafka.Kafka', paths.serverProperties], {
        cwd: paths.dir,
        detached: true,
        stdio: ['ignore', out.fd, out.fd],
      })
      child.once('error', (err) => {
        exited = `could not start java: ${err.message}`
      })
      child.once('exit', (code, signal) => {
        exited = `the broker exited during start (${signal ?? `code ${code}`})`
      })
      child.unref()
      pid = child.pid
      if (pid === undefined) throw new InfraError('could not start java')
      await writeFile(paths.pid, `${pid}\n`)
      log.info({ brokerPid: pid, log: paths.log }, 'kafka broker starting')
      const up = await waitForPort(endpoint, { timeoutMs, giveUp: () => exited, signal: deps.signal })
      if (!up) {
        throw new InfraError(`the broker did not accept connections within ${Math.round(timeoutMs / 1000)} s`)
      }
      return pid
    } catch (err) {
      if (pid !== undefined) await stopStarted(pid)
      const message = err instanceof Error ? err.message : String(err)
      throw new InfraError(`${message}; last lines of ${paths.log}:`, await tailFile(paths.log))
    } finally {
      await out.close()
    }
  }

  return {
    name: 'kafka',
    endpoint,
    data: [{ path: paths.data, holds: 'every topic with its messages, and the consumer groups\' committed offsets' }],
    startedByBourse,
    async start({ timeoutMs }) {
      const earlier = await startedByBourse()
      if (earlier) {
        log.info({ brokerPid: earlier.pid }, 'a broker Bourse started earlier is running: waiting for it')
        if (await waitForPort(endpoint, { timeoutMs, signal: deps.signal })) return earlier
        throw new InfraError(
          `the broker Bourse started (pid ${earlier.pid}) does not accept connections: run \`bourse infra down\`, then up`,
          await tailFile(paths.log),
        )
      }
      assertLocalHost(endpoint, 'Kafka', 'KAFKA_BROKERS')
      await checkJava()
      await prepareFiles()
      await formatOnce()
      return { pid: await launch(timeoutMs) }
    },
    async stop() {
      const pid = await livePidFromFile(paths.pid, brokerMarker)
      if (pid === undefined) {
        await removeFile(paths.pid)
        return { outcome: 'not-started-by-bourse' }
      }
      return { outcome: await stopStarted(pid), pid }
    },
    async prepare() {
      const topic = config.MARKET_TOPIC
      const admin = createAdmin({ brokers: kafkaBrokers(config), clientId: 'bourse-infra' })
      try {
        const partitions = await ensureTopic(admin, topic, config.MARKET_TOPIC_PARTITIONS, log)
        return [`topic ${topic} ready (${partitions} partitions)`]
      } catch (err) {
        throw new InfraError(
          `cannot create the topic ${topic} on ${formatEndpoint(endpoint)}: ${(err as Error).message}`,
        )
      } finally {
        await admin.close()
      }
    },
  }
}
