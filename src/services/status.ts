/** `bourse status`: the live instances of every service, from their heartbeats in Redis. */
import { UsageError } from '../platform/command.ts'
import { type Heartbeat, readServiceStatus } from '../platform/heartbeat.ts'
import { formatTable } from '../platform/text-table.ts'
import { daemons } from './daemons.ts'
import { defineService } from './shape.ts'
import { quote } from '../platform/quote.ts'

/** `1h02m`, `3m05s`, `12s`. */
function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** A status object on one line: `applied=120 lag.main_topic=0`. */
function statusLine(status: Record<string, unknown>, prefix = ''): string {
  const parts: string[] = []
  for (const [key, value] of Object.entries(status)) {
    if (value !== null && typeof value === 'object') parts.push(statusLine(value as Record<string, unknown>, `${prefix}${key}.`))
    else if (value !== undefined) parts.push(`${prefix}${key}=${String(value)}`)
  }
  return parts.filter(Boolean).join(' ')
}

/** The table `bourse status` prints. */
export function formatStatus(beats: readonly Heartbeat[], missing: readonly string[], now = Date.now()): string {
  const table = formatTable(
    ['SERVICE', 'INSTANCE', 'PID', 'HOST', 'VERSION', 'UP', 'BEAT', 'STATUS'],
    beats.map((b) => [
      b.service,
      b.instance,
      String(b.pid),
      b.host,
      b.version,
      duration(now - Date.parse(b.started_at)),
      `${duration(now - Date.parse(b.last_beat))} ago`,
      statusLine(b.status ?? {}),
    ]),
  )
  const lines = [table]
  if (beats.length === 0) lines.push('(no live instances)')
  lines.push(missing.length === 0 ? 'every expected service is live' : `missing: ${missing.join(', ')}`)
  return lines.join('\n')
}

export const { run } = defineService({
  spec: {
    name: 'status',
    usage: '[--json] [--expect SERVICE,...]',
    description:
      'Lists every live instance of every long-running service from the heartbeats they write to Redis\n' +
      '(instance, pid, host, version, uptime, last beat and the service\'s own status, such as consumer\n' +
      'lag), and names the expected services that have no live instance. An instance that dies is gone\n' +
      'within three HEARTBEAT_INTERVAL_MS. Exits 1 when an expected service is missing.',
    options: {
      json: { type: 'boolean', default: false },
      expect: { type: 'string', default: daemons.join(',') },
    },
    help: {
      json: 'Print one JSON document: { instances, missing }',
      expect: 'Services that should be running (empty: none)',
    },
  },
  parse: ({ values }) => {
    const expected = values.expect.split(',').map((s) => s.trim()).filter(Boolean)
    const bad = expected.find((name) => !/^[a-z][a-z0-9-]{0,62}$/.test(name))
    if (bad !== undefined) throw new UsageError(`--expect: ${quote(bad)} is not a service name`)
    return { json: values.json, expected }
  },
  needs: () => ({ redis: {} }),
  async start({ redis }, { json, expected }) {
    const { instances, missing } = await readServiceStatus(redis, expected)
    process.stdout.write(json ? `${JSON.stringify({ instances, missing }, null, 2)}\n` : `${formatStatus(instances, missing)}\n`)
    return missing.length === 0 ? 0 : 1
  },
})
