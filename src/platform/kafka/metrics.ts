/**
 * Prometheus metrics of a Kafka consumer, optional: without a registry every call is a
 * no-op. Metrics live in the registry they are given (never prom-client's global one), and
 * consumers sharing a registry share each metric, told apart by their labels.
 */
import { Counter, Gauge, type Registry } from 'prom-client'

/** What a consumer counts. */
export interface ConsumerMetrics {
  /** `n` messages taken from the topic. */
  messages(n: number): void
  /** A batch done (or, for a consumer taking messages one by one, a pull from the stream). */
  batch(): void
  /** `n` messages sent to the dead-letter topic. */
  deadLetters(n: number): void
  /** A failed attempt that is retried. */
  retry(): void
  /** Messages taken and not finished now. */
  inFlight(n: number): void
}

/** Labels of every metric of one consumer. */
export interface ConsumerLabels {
  /** The topic consumed. */
  topic: string
  /** The consumer group. */
  group: string
}

const labelNames = ['topic', 'group'] as const

function counter(registry: Registry, name: string, help: string): Counter<'topic' | 'group'> {
  const existing = registry.getSingleMetric(name)
  if (existing) return existing as Counter<'topic' | 'group'>
  return new Counter({ name, help, labelNames, registers: [registry] })
}

function gauge(registry: Registry, name: string, help: string): Gauge<'topic' | 'group'> {
  const existing = registry.getSingleMetric(name)
  if (existing) return existing as Gauge<'topic' | 'group'>
  return new Gauge({ name, help, labelNames, registers: [registry] })
}

const noMetrics: ConsumerMetrics = {
  messages() {},
  batch() {},
  deadLetters() {},
  retry() {},
  inFlight() {},
}

/**
 * The metrics of one consumer in `registry`: `bourse_consumer_messages_total`,
 * `bourse_consumer_batches_total`, `bourse_consumer_dead_letters_total`,
 * `bourse_consumer_retries_total` and the gauge `bourse_consumer_in_flight`, labelled by
 * topic and group. Without a registry, metrics that count nothing.
 */
export function createConsumerMetrics(registry: Registry | undefined, labels: ConsumerLabels): ConsumerMetrics {
  if (!registry) return noMetrics
  // Children bound to the labels once: an increment is then one addition, not a label lookup.
  const messages = counter(registry, 'bourse_consumer_messages_total', 'Messages taken from Kafka.').labels(labels)
  const batches = counter(registry, 'bourse_consumer_batches_total', 'Batches of messages: applied or stored (price updater, events worker), or pulled into flight (verifier).').labels(labels)
  const deadLetters = counter(registry, 'bourse_consumer_dead_letters_total', 'Messages sent to the dead-letter topic.').labels(labels)
  const retries = counter(registry, 'bourse_consumer_retries_total', 'Failed attempts that were retried.').labels(labels)
  const inFlight = gauge(registry, 'bourse_consumer_in_flight', 'Messages taken and not finished.').labels(labels)
  return {
    messages: (n) => messages.inc(n),
    batch: () => batches.inc(),
    deadLetters: (n) => deadLetters.inc(n),
    retry: () => retries.inc(),
    inFlight: (n) => inFlight.set(n),
  }
}
