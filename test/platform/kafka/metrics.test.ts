import assert from 'node:assert/strict'
import { test } from 'node:test'
import { register as globalRegistry, Registry } from 'prom-client'
import { createConsumerMetrics } from '../../../src/platform/kafka/metrics.ts'

const value = async (registry: Registry, name: string, labels: Record<string, string>) =>
  (await registry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value

test('consumer metrics live in the registry given, labelled by topic and group; consumers sharing a registry share the metrics', async () => {
  const registry = new Registry()
  const other = new Registry()
  const prices = createConsumerMetrics(registry, { topic: 'ticks', group: 'updater' })
  const orders = createConsumerMetrics(registry, { topic: 'orders', group: 'verifier' })
  const elsewhere = createConsumerMetrics(other, { topic: 'ticks', group: 'updater' })
  prices.messages(500)
  prices.messages(20)
  prices.batch()
  prices.deadLetters(2)
  prices.retry()
  prices.inFlight(7)
  orders.messages(1)
  elsewhere.messages(3)
  const ticks = { topic: 'ticks', group: 'updater' }
  assert.equal(await value(registry, 'bourse_consumer_messages_total', ticks), 520)
  assert.equal(await value(registry, 'bourse_consumer_messages_total', { topic: 'orders', group: 'verifier' }), 1)
  assert.equal(await value(registry, 'bourse_consumer_batches_total', ticks), 1)
  assert.equal(await value(registry, 'bourse_consumer_dead_letters_total', ticks), 2)
  assert.equal(await value(registry, 'bourse_consumer_retries_total', ticks), 1)
  assert.equal(await value(registry, 'bourse_consumer_in_flight', ticks), 7)
  assert.equal(await value(other, 'bourse_consumer_messages_total', ticks), 3)
  assert.equal(globalRegistry.getSingleMetric('bourse_consumer_messages_total'), undefined, 'nothing in the global registry')
  assert.match(await registry.metrics(), /bourse_consumer_messages_total\{topic="ticks",group="updater"\} 520/)
})

test('without a registry the metrics count nothing and cost nothing', () => {
  const metrics = createConsumerMetrics(undefined, { topic: 't', group: 'g' })
  metrics.messages(1)
  metrics.batch()
  metrics.inFlight(1)
  assert.equal(globalRegistry.getSingleMetric('bourse_consumer_batches_total'), undefined)
})
