/**
 * PostgreSQL on a Debian-style machine: starts the installed cluster with pg_ctlcluster
 * when nothing listens, and creates the database named in DATABASE_URL with psql.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { assertLocalHost, type InfraDeps, InfraError, type LocalService, type StartedByBourse } from './local-service.ts'
import { urlEndpoint, waitForPort } from './net.ts'
import { isMissingProgram, isProcessAlive, readPidFile, removeFile, runTool, tailText } from './processes.ts'

/** The installed cluster versions (`/etc/postgresql/<version>/main`), newest first. */
export async function postgresVersions(etc = '/etc/postgresql'): Promise<string[]> {
  let entries: string[]
  try {
    entries = await readdir(etc)
  } catch {
    return []
  }
  const versions: string[] = []
  for (const entry of entries) {
    if (!/^\d+(\.\d+)?$/.test(entry)) continue
    if ((await readdir(join(etc, entry)).catch((): string[] => [])).includes('main')) versions.push(entry)
  }
  return versions.sort((a, b) => Number(b) - Number(a))
}

/** The database of a PostgreSQL URL and the URL of the maintenance database on the same server. */
export function databaseTarget(databaseUrl: string): {
  database: string | undefined
  adminUrl: string
  password: string
} {
  const url = new URL(databaseUrl)
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined
  const password = decodeURIComponent(url.password)
  url.password = ''
  url.pathname = '/postgres'
  return { database, adminUrl: url.toString(), password }
}

/** `"name"` quoted as an SQL identifier. */
export const quoteIdentifier = (name: string): string => `"${name.replaceAll('"', '""')}"`

/** `'text'` quoted as an SQL string literal. */
export const quoteLiteral = (text: string): string => `'${text.replaceAll("'", "''")}'`

/**
 * Creates the database of DATABASE_URL unless it exists, through psql (no driver needed).
 * Resolves to a line for the operator.
 */
export async function ensureDatabase(databaseUrl: string): Promise<string> {
  const { database, adminUrl, password } = databaseTarget(databaseUrl)
  if (database === undefined) return 'no database named in DATABASE_URL'
  const extraEnv = password === '' ? undefined : { PGPASSWORD: password }
  const psql = (sql: string) =>
    runTool('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-d', adminUrl, '-c', sql], {
      extraEnv,
    })
  let found: Awaited<ReturnType<typeof psql>>
  try {
    found = await psql(`SELECT 1 FROM pg_database WHERE datname = ${quoteLiteral(database)}`)
  } catch (err) {
    if (!isMissingProgram(err)) throw err
    return `psql is not installed: create the database ${database} yourself`
  }
  if (found.code !== 0) throw new InfraError(`cannot query PostgreSQL with psql`, tailText(found.output))
  if (found.output.trim() === '1') return `database ${database} exists`
  const created = await psql(`CREATE DATABASE ${quoteIdentifier(database)}`)
  if (created.code === 0) return `database ${database} created`
  // Another process may have created it between the two statements.
  if (/already exists/.test(created.output)) return `database ${database} exists`
  throw new InfraError(`cannot create the database ${database}`, tailText(created.output))
}

/** Where `up` notes the cluster it started (`<version> main`), so `down` stops only that one. */
export function postgresMarkerPath(bourseHome: string): string {
  return join(resolve(bourseHome, 'postgres'), 'started-cluster')
}

async function startedCluster(marker: string): Promise<{ version: string; cluster: string } | undefined> {
  try {
    const [version, cluster] = (await readFile(marker, 'utf8')).trim().split(/\s+/)
    return version && cluster ? { version, cluster } : undefined
  } catch {
    return undefined
  }
}

const pgCtlCluster = async (version: string, cluster: string, action: 'start' | 'stop') => {
  try {
    return await runTool('pg_ctlcluster', ['--skip-systemctl-redirect', version, cluster, action])
  } catch (err) {
    if (!isMissingProgram(err)) throw err
    throw new InfraError(
      'pg_ctlcluster is not installed: start PostgreSQL yourself (apt-get install postgresql) or set DATABASE_URL',
    )
  }
}

/** PostgreSQL (DATABASE_URL) as a {@link LocalService}. */
export function createPostgresCluster(deps: InfraDeps, options: { etc?: string } = {}): LocalService {
  const endpoint = urlEndpoint(deps.config.DATABASE_URL, 5432)
  const marker = postgresMarkerPath(deps.config.BOURSE_HOME)

  const startedByBourse = async (): Promise<StartedByBourse | undefined> => {
    const started = await startedCluster(marker)
    if (!started) return undefined
    // Debian's postgresql.conf sets external_pid_file to this path.
    const pid = await readPidFile(`/var/run/postgresql/${started.version}-${started.cluster}.pid`)
    if (pid !== undefined && (await isProcessAlive(pid))) return { pid }
    return undefined
  }

  return {
    name: 'postgres',
    endpoint,
    startedByBourse,
    async start({ timeoutMs }) {
      assertLocalHost(endpoint, 'PostgreSQL', 'DATABASE_URL')
      const [version] = await postgresVersions(options.etc)
      if (version === undefined) {
        throw new InfraError(
          'no PostgreSQL cluster in /etc/postgresql: install PostgreSQL or set DATABASE_URL',
        )
      }
      const result = await pgCtlCluster(version, 'main', 'start')
      if (result.code !== 0) {
        throw new InfraError(
          `pg_ctlcluster ${version} main start failed (exit ${result.code})`,
          tailText(result.output),
        )
      }
      await mkdir(resolve(marker, '..'), { recursive: true })
      await writeFile(marker, `${version} main\n`)
      if (!(await waitForPort(endpoint, { timeoutMs, signal: deps.signal }))) {
        throw new InfraError(
          `cluster ${version}/main started but port ${endpoint.port} does not answer: check port in /etc/postgresql/${version}/main/postgresql.conf`,
        )
      }
      deps.log.info({ version }, 'postgresql cluster started')
      return (await startedByBourse()) ?? { pid: undefined }
    },
    async stop() {
      const started = await startedCluster(marker)
      if (!started) return { outcome: 'not-started-by-bourse' }
      const running = await startedByBourse()
      if (running) {
        const result = await pgCtlCluster(started.version, started.cluster, 'stop')
        if (result.code !== 0) {
          throw new InfraError(
            `pg_ctlcluster ${started.version} ${started.cluster} stop failed`,
            tailText(result.output),
          )
        }
      }
      await removeFile(marker)
      return running ? { outcome: 'stopped', pid: running.pid } : { outcome: 'not-running' }
    },
    prepare: async () => [await ensureDatabase(deps.config.DATABASE_URL)],
  }
}
