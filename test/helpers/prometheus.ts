/** Reading Prometheus text exposition in tests, with the well-kept parser `parse-prometheus-text-format`. */
import { createRequire } from 'node:module'

/** One sample of a family; histograms carry buckets, count and sum instead of a value. */
export interface MetricSample {
  value?: string
  labels?: Record<string, string>
  buckets?: Record<string, string>
  count?: string
  sum?: string
}

/** A metric family as the parser gives it. */
export interface MetricFamily {
  name: string
  help: string
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
  metrics: MetricSample[]
}

// The package ships CommonJS without types.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => MetricFamily[]

/** Parses a `/metrics` body; throws on text that is not the exposition format. */
export function parseMetrics(text: string): MetricFamily[] {
  return parse(text)
}

/** The family named `name`, or undefined. */
export function family(families: readonly MetricFamily[], name: string): MetricFamily | undefined {
  return families.find((f) => f.name === name)
}

/**
 * The sum of a counter's or gauge's samples whose labels include `labels` (or, for a
 * histogram, of their counts); 0 when there is none.
 */
export function metricValue(families: readonly MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  const found = family(families, name)
  if (!found) return 0
  let total = 0
  for (const sample of found.metrics) {
    if (!Object.entries(labels).every(([k, v]) => sample.labels?.[k] === v)) continue
    total += Number(found.type === 'HISTOGRAM' || found.type === 'SUMMARY' ? sample.count : sample.value)
  }
  return total
}

/** Scrapes `url` and parses it (asserting a 200 answer). */
export async function scrapeMetrics(url: string, headers: Record<string, string> = {}): Promise<MetricFamily[]> {
  const res = await fetch(url, { headers })
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${await res.text()}`)
  return parseMetrics(await res.text())
}
