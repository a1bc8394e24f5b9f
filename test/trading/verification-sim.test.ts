/** The verification API simulation, over real HTTP. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { request } from 'undici'
import { createVerificationClient } from '../../src/trading/verification.client.ts'
import { createVerificationSim, type VerificationSimOptions } from '../../src/trading/verification-sim.ts'
import { waitFor } from '../helpers/infra.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

async function startSim(options: VerificationSimOptions) {
  const sim = createVerificationSim({ port: 0, ...options })
  closers.push(() => sim.close())
  const url = await sim.listen()
  return { sim, url }
}

async function post(url: string, body: string): Promise<{ status: number; json: unknown; ms: number }> {
  const started = performance.now()
  const response = await request(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  const json = await response.body.json()
  return { status: response.statusCode, json, ms: performance.now() - started }
}

test('answers {"result": 0} after a whole number of seconds within the bounds, times the scale', async () => {
  const { sim, url } = await startSim({ timeScale: 0.01, minSeconds: 10, maxSeconds: 40, seed: 7 })
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/verify$/)
  // Warm up (connections, JIT) so the timings below measure the simulated delay.
  await Promise.all(Array.from({ length: 60 }, () => post(url, '{"user":"warmup"}')))
  const answers = await Promise.all(
    Array.from({ length: 60 }, (_, i) => post(url, JSON.stringify({ user: `user${i}`, order_id: `order-${i}` }))),
  )
  for (const answer of answers) {
    assert.equal(answer.status, 200)
    assert.deepEqual(answer.json, { result: 0 })
    // Timers never fire early by more than their 1 ms rounding; the upper bound allows for a busy machine.
    assert.ok(answer.ms >= 100 - 1, `answered after ${answer.ms} ms, before the 100 ms minimum`)
    assert.ok(answer.ms <= 400 + 1000, `answered after ${answer.ms} ms, long after the 400 ms maximum`)
  }
  const times = answers.map((a) => a.ms).sort((a, b) => a - b)
  assert.ok(times.at(-1)! - times[0]! > 150, `the delays spread over the range (${times[0]} to ${times.at(-1)} ms)`)
  assert.deepEqual({ ...sim.stats }, { received: 120, pending: 0, verified: 120, failed: 0, badRequests: 0, abandoned: 0 })
})

test('the fail rate answers {"result": 1} to about that fraction, and a seed repeats the answers', async () => {
  const results = async (seed: number) => {
    const { url } = await startSim({ timeScale: 0.0001, minSeconds: 1, maxSeconds: 5, failRate: 0.3, seed })
    const answers = await Promise.all(
      Array.from({ length: 400 }, (_, i) => post(url, JSON.stringify({ user: 'user1', order_id: String(i) }))),
    )
    return answers.map((a) => (a.json as { result: number }).result)
  }
  const first = await results(42)
  const failed = first.filter((r) => r === 1).length
  assert.ok(failed > 400 * 0.2 && failed < 400 * 0.4, `${failed} of 400 failed, expected about 120`)
  assert.ok(first.every((r) => r === 0 || r === 1))

  const { url } = await startSim({ timeScale: 0.0001, maxSeconds: 1, failRate: 1 })
  assert.deepEqual((await post(url, '{"user":"user1"}')).json, { result: 1 })
})

test('bad requests get 400, other paths 404 and other methods 405; GET /health answers', async () => {
  const { sim, url } = await startSim({ timeScale: 0.0001 })
  for (const body of ['not json', '[]', 'null', '{}', '{"user": 5}', '{"user": ""}', '{"user": "a b"}', '{"user": "user1", "order_id": 3}']) {
    const answer = await post(url, body)
    assert.equal(answer.status, 400, body)
    assert.equal((answer.json as { error: { code: string } }).error.code, 'bad_request')
  }
  assert.equal(sim.stats.badRequests, 8)
  assert.equal((await post(url, JSON.stringify({ user: 'x'.repeat(20_000) }))).status, 413)
  assert.equal((await post(url.replace('/verify', '/other'), '{"user":"user1"}')).status, 404)
  const get = await request(url)
  assert.equal(get.statusCode, 405)
  await get.body.dump()
  const health = await request(url.replace('/verify', '/health'))
  assert.equal(health.statusCode, 200)
  assert.deepEqual(await health.body.json(), { status: 'ok', pending: 0 })
})

test('holds thousands of requests at once, then answers them all', async () => {
  // Each answer after 3 s: opening 2000 connections takes well under one, even on a busy machine.
  const { sim, url } = await startSim({ timeScale: 3, minSeconds: 1, maxSeconds: 1 })
  const client = createVerificationClient({ url, maxConnections: 2000 })
  closers.push(() => client.close())
  const deadline = Date.now() + 30_000
  const results = Array.from({ length: 2000 }, (_, i) => client.verify({ orderId: `o${i}`, user: 'user1' }, deadline))
  await waitFor(() => sim.stats.pending === 2000 || sim.stats.verified > 0, { what: '2000 pending requests' })
  assert.equal(sim.stats.verified, 0, 'every request was pending before the first answer')
  assert.deepEqual(new Set(await Promise.all(results)), new Set(['verified']))
  assert.equal(sim.stats.verified, 2000)
})

test('a caller that gives up frees its request, and close answers 503 to those still waiting', async () => {
  const { sim, url } = await startSim({ timeScale: 1, minSeconds: 60, maxSeconds: 60 })
  const controller = new AbortController()
  const abandoned = request(url, { method: 'POST', body: '{"user":"user1"}', signal: controller.signal })
  const waiting = request(url, { method: 'POST', body: '{"user":"user2"}' })
  await waitFor(() => sim.stats.pending === 2, { what: 'two pending requests' })
  controller.abort()
  await assert.rejects(abandoned)
  await waitFor(() => sim.stats.abandoned === 1, { what: 'the abandoned request to be freed' })
  const closed = sim.close()
  const answer = await waiting
  assert.equal(answer.statusCode, 503)
  await answer.body.dump()
  await closed
  assert.equal(sim.stats.pending, 0)
})
