/**
 * The intake once the broker is known to be down, on a broker of the test's own: after
 * the first refusals, each request is answered 503 with `Retry-After` at once instead of
 * after the producer's retries (about 2,500 ms before the fix), and the same API takes
 * events again by itself once the broker is back.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import { type EventsApi, openEventsApi, sampleEvent } from '../helpers/events.ts'
import { waitFor } from '../helpers/infra.ts'
import { type OwnKafka, startOwnKafka } from '../helpers/own-kafka.ts'

/**
 * Longest answer once the broker is known down. The producer's retries take about
 * 2,500 ms (10 x 250 ms); a refusal that does not wait for them takes a few ms, and the
 * bound leaves room for a busy two-core machine.
 */
const FAST_MS = 1000

let kafka: OwnKafka | undefined
let api: EventsApi | undefined

before(async () => {
  kafka = await startOwnKafka()
  api = await openEventsApi({ env: { KAFKA_BROKERS: kafka.broker } })
})
after(async () => {
  try {
    await api?.close()
  } finally {
    await kafka?.destroy()
  }
})

test('broker SIGKILLed: once known down, events are refused with 503 in well under the producer retries; 202 again after the restart', async (t) => {
  assert.ok(api && kafka)
  const { app, auth, tokens } = api
  const post = async () => {
    const startedAt = performance.now()
    const res = await app.inject({
      method: 'POST',
      url: '/api/events',
      headers: { ...auth(tokens.app), 'content-type': 'application/json' },
      payload: JSON.stringify([sampleEvent(randomUUID())]),
    })
    return { status: res.statusCode, ms: performance.now() - startedAt, retryAfter: res.headers['retry-after'], body: res.body }
  }

  assert.equal((await post()).status, 202)
  await kafka.kill()

  // The first refusals may wait for the sends already under way; then the broker is known down.
  const first = await waitFor(async () => {
    const outcome = await post()
    return outcome.status === 503 ? outcome : undefined
  }, { timeoutMs: 30_000, what: 'a 503 after the kill' })
  t.diagnostic(`first 503 after ${Math.round(first.ms)} ms`)

  const refused = []
  for (let i = 0; i < 5; i++) refused.push(await post())
  for (const outcome of refused) {
    assert.equal(outcome.status, 503, outcome.body)
    assert.equal(outcome.retryAfter, '5')
    assert.equal((JSON.parse(outcome.body) as { error: { code: string } }).error.code, 'service_unavailable')
  }
  const slowest = Math.max(...refused.map((o) => o.ms))
  t.diagnostic(`5 refusals once known down, the slowest after ${Math.round(slowest)} ms`)
  assert.ok(slowest < FAST_MS, `a refusal took ${Math.round(slowest)} ms once the broker was known down`)

  // Back: the same API takes events again without a restart.
  await kafka.restart()
  const accepted = await waitFor(async () => {
    const outcome = await post()
    return outcome.status === 202 ? outcome : undefined
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'a 202 after the restart' })
  assert.deepEqual(Object.keys(JSON.parse(accepted.body) as object), ['accepted', 'ids'])
})
