/**
 * Reading a `/metrics` scrape in tests with parse-prometheus-text-format. That parser
 * flattens a histogram into one set of buckets and drops the label sets of its `_count`
 * and `_sum` series, so a histogram with labels cannot be read through it as one. Its
 * `# TYPE ... histogram` lines are therefore removed first: the parser then reads every
 * series (`_bucket`, `_sum`, `_count`) as an untyped family of its own, with labels.
 */
import parsePrometheusTextFormat, { type PrometheusSample } from 'parse-prometheus-text-format'

/** The samples of each series in a scrape, by series name (`x_count`, `x_bucket`, `x` for a counter). */
export function parseScrape(text: string): Map<string, PrometheusSample[]> {
  const untyped = text.replace(/^# TYPE \S+ histogram$/gm, '')
  const series = new Map<string, PrometheusSample[]>()
  for (const family of parsePrometheusTextFormat(untyped)) {
    series.set(family.name, [...(series.get(family.name) ?? []), ...family.metrics])
  }
  return series
}

/** The value of the sample of `name` whose labels include `labels`; 0 when there is none. */
export function sampleValue(scrape: Map<string, PrometheusSample[]>, name: string, labels: Record<string, string>): number {
  const sample = scrape.get(name)?.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v))
  return sample?.value === undefined ? 0 : Number(sample.value)
}

/** The sum of the samples of `name` whose labels include `labels`; 0 when there is none. */
export function seriesTotal(scrape: Map<string, PrometheusSample[]>, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  for (const sample of scrape.get(name) ?? []) {
    if (Object.entries(labels).every(([k, v]) => sample.labels?.[k] === v)) total += Number(sample.value ?? 0)
  }
  return total
}

/** The type a scrape declares for a family (`counter`, `gauge`, `histogram`), from its `# TYPE` line. */
export function declaredType(text: string, name: string): string | undefined {
  return new RegExp(`^# TYPE ${name} (\\S+)$`, 'm').exec(text)?.[1]
}

/** Scrapes `url` (throwing unless it answers 200) and parses it. */
export async function scrapeMetrics(url: string, headers: Record<string, string> = {}): Promise<{ text: string; series: Map<string, PrometheusSample[]> }> {
  const res = await fetch(url, { headers })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${text}`)
  return { text, series: parseScrape(text) }
}
