/**
 * Prometheus metrics (prom-client): one registry per service, never prom-client's global
 * one, so tests and several services in one process never share counters. A
 * long-running service serves it at `/metrics` on `--metrics-port`; the API on its own
 * HTTP port.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export type { Registry }

/** A service's metrics: its registry, and makers that return the same metric for the same name. */
export interface Metrics {
  readonly registry: Registry
  /** A counter on this registry (created once per name). */
  counter<L extends string = never>(name: string, help: string, labelNames?: readonly L[]): Counter<L>
  /** A gauge on this registry (created once per name); `collect` runs at each scrape. */
  gauge<L extends string = never>(name: string, help: string, labelNames?: readonly L[], collect?: (gauge: Gauge<L>) => void): Gauge<L>
  /**
   * Exposes a live stats object (the totals every service keeps for its progress lines):
   * each numeric field becomes `bourse_<prefix>_<field>_total`, a counter read at scrape
   * time, or `bourse_<prefix>_<field>` as a gauge when listed in `gauges`.
   */
  exposeStats(prefix: string, stats: object, gauges?: readonly string[]): void
  /**
   * A counter read at scrape time from `read`, one value per label set: for totals a
   * service already keeps (per provider, per partition), so the metric cannot drift from them.
   */
  counterFrom<L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Record<L, string>, number]>): void
  /** A gauge read at scrape time from `read`, one value per label set. */
  gaugeFrom<L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Record<L, string>, number]>): void
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Labels on every metric (service, instance). */
  labels?: Record<string, string>
  /** Collect Node's process metrics (CPU, memory, event loop lag, GC). @defaultValue true */
  processMetrics?: boolean
}


const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)

/** Creates a service's registry with Node's process metrics. */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry()
  if (options.labels) registry.setDefaultLabels(options.labels)
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry })
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined

  const metrics: Metrics = {
    registry,
    counter: (name, help, labelNames = []) =>
      existing(name) ?? new Counter({ name, help, labelNames, registers: [registry] }),
    gauge: (name, help, labelNames = [], collect) =>
      existing(name) ??
      new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        ...(collect && {
          collect(this: Gauge<(typeof labelNames)[number]>) {
            collect(this)
          },
        }),
      }),
    exposeStats(prefix, stats, gauges = []) {
      const record = stats as Record<string, unknown>
      for (const [field, value] of Object.entries(record)) {
        if (typeof value !== 'number') continue
        const base = `bourse_${snake(prefix).replace(/-/g, '_')}_${snake(field)}`
        if (gauges.includes(field)) {
          metrics.gauge(base, `${prefix} ${field} (now)`, [], (g) => g.set(record[field] as number))
          continue
        }
        // A counter read from the stats at scrape time: the stats are the one count, so the
        // metric cannot drift from the progress lines.
        new Counter({
          name: `${base}_total`,
          help: `${prefix} ${field} since start`,
          registers: [registry],
          collect(this: Counter) {
            this.reset()
            this.inc(record[field] as number)
          },
        })
      }
    },
    counterFrom(name, help, labelNames, read) {
      if (existing(name)) return
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect(this: Counter<(typeof labelNames)[number]>) {
          this.reset()
          for (const [labels, value] of read()) this.inc(labels, value)
        },
      })
    },
    gaugeFrom(name, help, labelNames, read) {
      metrics.gauge(name, help, labelNames, (gauge) => {
        gauge.reset()
        for (const [labels, value] of read()) gauge.set(labels, value)
      })
    },
  }
  return metrics
}

/** What a histogram is: its name, help, labels and buckets (in its unit). */
export interface HistogramSpec<L extends string> {
  name: string
  help: string
  labelNames: readonly L[]
  buckets: number[]
}

/**
 * A histogram on `registry`, or undefined without one: for domain code whose metrics
 * registry is an optional dependency (`metrics?.observe(...)`).
 */
export function histogramOn<L extends string>(registry: Registry | undefined, spec: HistogramSpec<L>): Histogram<L> | undefined {
  if (!registry) return undefined
  return (registry.getSingleMetric(spec.name) as Histogram<L> | undefined) ?? new Histogram({ ...spec, registers: [registry] })
}

/** A running `/metrics` server. */
export interface MetricsServer {
  /** `http://host:port` it listens on. */
  readonly url: string
  close(): Promise<void>
}

/**
 * Serves the registry at `GET /metrics` (Prometheus text format) on its own port. Every
 * other path is 404.
 */
export async function startMetricsServer(registry: Registry, port: number, host = '127.0.0.1'): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    )
  })
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shown}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
