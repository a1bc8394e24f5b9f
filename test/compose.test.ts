import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { parse } from 'yaml'
import { commands } from '../src/services/commands.ts'
import { repoRoot } from './helpers/infra.ts'

interface ComposeService {
  image?: string
  build?: unknown
  command?: string | string[]
  environment?: Record<string, string | number> | string[]
  depends_on?: Record<string, { condition?: string }> | string[]
  healthcheck?: { test?: unknown }
  ports?: string[]
  volumes?: Array<string | { type?: string; source?: string; target?: string }>
}

const compose = parse(readFileSync(join(repoRoot, 'compose.yaml'), 'utf8'), { merge: true }) as {
  services?: Record<string, ComposeService>
  volumes?: Record<string, unknown>
}
const services = compose.services ?? {}
const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8')

/** Dockerfile instructions with their arguments (comments and blank lines dropped). */
const instructions = dockerfile
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'))
  .map((line) => {
    const [keyword = '', ...rest] = line.split(/\s+/)
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') }
  })

const builtFromProject = Object.entries(services).filter(([, service]) => service.build !== undefined)

const commandWords = (service: ComposeService): string[] =>
  Array.isArray(service.command) ? service.command : (service.command ?? '').split(/\s+/).filter(Boolean)

const environment = (service: ComposeService): Record<string, string> =>
  Array.isArray(service.environment)
    ? Object.fromEntries(
        service.environment.map((entry) => [entry.split('=')[0], entry.split('=').slice(1).join('=')]),
      )
    : Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]))

/** The named volume a service mounts at `target` (short `name:/path` or long syntax), if any. */
const namedVolumeAt = (service: ComposeService | undefined, target: string): string | undefined => {
  for (const volume of service?.volumes ?? []) {
    const [source, path] =
      typeof volume === 'string' ? volume.split(':') : [volume.type === 'volume' ? volume.source : undefined, volume.target]
    if (path === target && source && !source.startsWith('.') && !source.startsWith('/')) return source
  }
  return undefined
}

/** The value after `--name` in a command (`redis-server --appendonly yes`). */
const flag = (service: ComposeService | undefined, name: string): string | undefined => {
  const words = commandWords(service ?? {})
  const at = words.indexOf(`--${name}`)
  return at === -1 ? undefined : words[at + 1]
}

describe('compose.yaml', () => {
  test('Redis is durable: the append-only file on, in a named volume', () => {
    const redis = services.redis
    assert.equal(flag(redis, 'appendonly'), 'yes', 'price histories and consumed offsets survive a restart')
    assert.match(flag(redis, 'appendfsync') ?? 'everysec', /^(everysec|always)$/)
    const volume = namedVolumeAt(redis, '/data')
    assert.ok(volume, 'redis keeps /data in a named volume')
    assert.ok(compose.volumes && volume in compose.volumes, `the volume ${volume} is declared`)
  })

  test('Kafka and PostgreSQL keep their data in named volumes too', () => {
    const logDirs = environment(services.kafka ?? {}).KAFKA_LOG_DIRS
    assert.ok(logDirs, 'KAFKA_LOG_DIRS is set')
    for (const [name, target] of [
      ['kafka', logDirs],
      ['postgres', '/var/lib/postgresql/data'],
    ] as const) {
      const volume = namedVolumeAt(services[name], target)
      assert.ok(volume, `${name} keeps ${target} in a named volume`)
      assert.ok(compose.volumes && volume in compose.volumes, `the volume ${volume} is declared`)
    }
  })

  test('runs Kafka from the official image, Redis and PostgreSQL, each with a healthcheck', () => {
    assert.match(services.kafka?.image ?? '', /^apache\/kafka:4\./)
    assert.match(services.redis?.image ?? '', /^redis:/)
    assert.match(services.postgres?.image ?? '', /^postgres:/)
    for (const name of ['kafka', 'redis', 'postgres']) {
      assert.ok(services[name]?.healthcheck?.test, `${name} has a healthcheck`)
    }
    const kafkaEnv = environment(services.kafka ?? {})
    assert.equal(kafkaEnv.KAFKA_PROCESS_ROLES, 'broker,controller')
    assert.equal(kafkaEnv.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, '1')
    assert.equal(environment(services.postgres ?? {}).POSTGRES_HOST_AUTH_METHOD, 'trust')
  })

  test('has the market data and trading services built from the project', () => {
    const built = builtFromProject.map(([name]) => name).sort()
    assert.deepEqual(built, [
      'alerts-scheduler',
      'alerts-worker',
      'api',
      'btc-price',
      'btc-price-sim',
      'callback-sender',
      'ebay-sim',
      'events-worker',
      'mail-sink',
      'performance',
      'price-updater',
      'producer',
      'seed',
      'ticker',
      'verifier',
      'verify-sim',
    ])
    assert.deepEqual(services.api?.ports, ['8000:8000'])
    assert.equal(environment(services.verifier ?? {}).VERIFY_URL, 'http://verify-sim:8100/verify')
    assert.equal(environment(services['alerts-worker'] ?? {}).EBAY_BASE_URL, 'http://ebay-sim:8200')
    assert.equal(environment(services['alerts-worker'] ?? {}).SMTP_URL, 'smtp://mail-sink:1025')
    assert.equal(
      environment(services['btc-price'] ?? {}).BTC_PROVIDER_URLS,
      'coinbase=http://btc-price-sim:8300,coingecko=http://btc-price-sim:8300,kraken=http://btc-price-sim:8300',
    )
  })

  for (const [name, service] of builtFromProject) {
    test(`${name}: runs a bourse command on files that exist, against the compose services`, () => {
      const [command, ...args] = commandWords(service)
      const known = commands.map((c) => c.name)
      assert.ok(command && known.includes(command), `${name}: ${command} is one of ${known.join(', ')}`)
      for (const arg of args.filter((a) => !a.startsWith('-') && /\/|\.(txt|csv|json)$/.test(a))) {
        assert.ok(existsSync(join(repoRoot, arg)), `${name}: ${arg} exists in the repository`)
        const topDir = arg.split('/')[0]
        assert.ok(
          instructions.some((i) => i.keyword === 'COPY' && i.args.split(/\s+/).includes(topDir ?? '')),
          `${name}: the Dockerfile copies ${topDir} into the image`,
        )
      }
      const env = environment(service)
      assert.match(env.REDIS_URL ?? '', /^redis:\/\/redis:6379\b/)
      assert.equal(env.KAFKA_BROKERS, 'kafka:9092')
      assert.match(env.DATABASE_URL ?? '', /^postgres(ql)?:\/\/[^@]*@postgres:5432\//)
      const dependsOn = service.depends_on
      // verify-sim (the simulated external API) needs none of the infrastructure.
      if (name === 'verify-sim') return assert.equal(dependsOn, undefined)
      assert.ok(dependsOn && !Array.isArray(dependsOn), `${name}: depends_on with conditions`)
      for (const [dependency, { condition }] of Object.entries(dependsOn)) {
        assert.ok(services[dependency], `${name}: depends on ${dependency}, which exists`)
        assert.match(
          condition ?? '',
          /^service_(healthy|completed_successfully)$/,
          `${name} -> ${dependency}`,
        )
      }
    })
  }
})

describe('Dockerfile', () => {
  test('builds from node:24-slim and runs the CLI as a non-root user', () => {
    assert.equal(instructions[0]?.keyword, 'FROM')
    assert.match(instructions[0]?.args ?? '', /^node:24-slim\b/)
    const entrypoint = instructions.findLast((i) => i.keyword === 'ENTRYPOINT')
    assert.deepEqual(JSON.parse(entrypoint?.args ?? 'null'), ['node', 'src/cli.ts'])
    const user = instructions.findLast((i) => i.keyword === 'USER')
    assert.ok(user && !/^(root|0)(:|$)/.test(user.args), 'runs as a non-root user')
    assert.ok(
      instructions.some((i) => i.keyword === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)),
      'installs production dependencies only',
    )
  })

  test('.dockerignore keeps the sources and fixtures in and node_modules out', () => {
    const ignored = readFileSync(join(repoRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
    assert.ok(ignored.includes('node_modules'))
    for (const kept of ['src', 'fixtures', 'package.json', 'package-lock.json']) {
      assert.ok(!ignored.includes(kept), `${kept} is not ignored`)
    }
  })
})
