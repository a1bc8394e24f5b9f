/**
 * The events client against a local fake intake speaking real HTTP (node:http): retries
 * (503, 429 with Retry-After, a dropped connection) that still deliver each batch once,
 * refusals that are never retried, batching by count, bytes and time, `close()` and the
 * exit hook flushing, and the checks `track()` makes before queueing.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, beforeEach, describe, it } from 'node:test'
import {
  createEventsClient,
  EventsClientError,
  type EventsClientOptions,
  EventsDeliveryError,
  EventsRejectedError,
  EventValidationError,
} from '../../src/events/client.ts'
import type { IncomingEvent } from '../../src/events/events.schemas.ts'
import { repoRoot } from '../helpers/infra.ts'

/** A request the fake intake received. */
interface Received {
  at: number
  authorization: string | undefined
  contentType: string | undefined
  events: Array<IncomingEvent & { id: string }>
}

/** What the fake answers to request number `n` (0-based): a status (perhaps late), or `drop` to reset the connection. */
type Script = (n: number) => { status: number; headers?: Record<string, string>; body?: unknown; delayMs?: number } | 'drop'

const accepted: Script = () => ({ status: 202, body: { accepted: 1, ids: [] } })

let server: Server
let url: string
let script: Script = accepted
let received: Received[] = []
/** Requests being answered now, and the most at once. */
let active = 0
let maxActive = 0
/** Resolves when the fake has received `count` requests. */
let waiters: Array<{ count: number; resolve: () => void }> = []

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => resolve(body))
    req.on('error', reject)
  })
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  active++
  maxActive = Math.max(maxActive, active)
  res.on('close', () => active--)
  readBody(req).then((text) => {
    const n = received.length
    received.push({
      at: performance.now(),
      authorization: req.headers.authorization,
      contentType: req.headers['content-type'],
      events: JSON.parse(text) as Received['events'],
    })
    for (const waiter of waiters.filter((w) => received.length >= w.count)) waiter.resolve()
    waiters = waiters.filter((w) => received.length < w.count)
    const answer = script(n)
    if (answer === 'drop') {
      req.socket.destroy()
      return
    }
    const reply = () => {
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
      res.end(JSON.stringify(answer.body ?? {}))
    }
    if (answer.delayMs === undefined) reply()
    else setTimeout(reply, answer.delayMs)
  }, () => res.writeHead(400).end())
}

function requestsReceived(count: number): Promise<void> {
  if (received.length >= count) return Promise.resolve()
  return new Promise((resolve) => waiters.push({ count, resolve }))
}

before(async () => {
  server = createServer(handle)
  server.listen({ port: 0, host: '127.0.0.1' })
  await once(server, 'listening')
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})
beforeEach(() => {
  script = accepted
  received = []
  waiters = []
  maxActive = 0
})

const event = (i: number, extra: Partial<IncomingEvent> = {}): IncomingEvent => ({
  session_id: `session-${i % 3}`,
  category: 'page interaction',
  name: 'pageview',
  data: { host: 'www.consumeraffairs.com', path: `/page/${i}` },
  timestamp: '2021-01-01 09:15:27.243860',
  ...extra,
})

/** A client for the fake, with fast retries, no timer flush and no exit hook unless asked. */
const client = (options: Partial<EventsClientOptions> = {}) =>
  createEventsClient({ url, token: 'bourse_app_test', retryBaseMs: 5, flushIntervalMs: 60_000, flushOnExit: false, ...options })

const sizes = () => received.map((r) => r.events.length)
const errorBody = (code: string, details?: unknown) => ({ error: { code, message: `${code} for the test`, details } })

describe('retries', () => {
  it('delivers once after 503 twice then 202: the same batch, the same ids, each attempt', async () => {
    script = (n) => (n < 2 ? { status: 503, body: errorBody('service_unavailable') } : { status: 202 })
    const events = client()
    const ids = [events.track(event(1)), events.track(event(2, { id: '3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11' }))]
    assert.equal(ids[1], '3f1c8c52-6a8e-4f37-9b39-2f3a1b0d9e11')
    await events.flush()
    assert.equal(received.length, 3)
    for (const request of received) {
      assert.deepEqual(request.events.map((e) => e.id), ids)
      assert.equal(request.authorization, 'Bearer bourse_app_test')
      assert.equal(request.contentType, 'application/json')
    }
    assert.deepEqual(received[0]!.events[0], { ...event(1), id: ids[0] })
    assert.deepEqual(events.stats, { queued: 0, inFlight: 0, sent: 2, failed: 0, retries: 2, batches: 1 })
    await events.close()
  })

  it('waits the Retry-After of a 429 and of a 503 before trying again', async () => {
    script = (n) =>
      n === 0
        ? { status: 429, headers: { 'retry-after': '1' }, body: errorBody('rate_limited') }
        : n === 1
          ? { status: 503, headers: { 'retry-after': '1' } }
          : { status: 202 }
    const events = client()
    events.track(event(1))
    await events.flush()
    assert.equal(received.length, 3)
    assert.ok(received[1]!.at - received[0]!.at >= 950, `429: waited ${received[1]!.at - received[0]!.at} ms`)
    assert.ok(received[2]!.at - received[1]!.at >= 950, `503: waited ${received[2]!.at - received[1]!.at} ms`)
    assert.equal(events.stats.retries, 2)
    await events.close()
  })

  it('retries a dropped connection and a timeout', async () => {
    script = (n) => (n === 0 ? 'drop' : { status: 202 })
    const events = client()
    events.track(event(1))
    await events.flush()
    assert.equal(received.length, 2)
    assert.deepEqual(received[0]!.events, received[1]!.events)

    received = []
    // The first answer comes after the client's timeout.
    script = (n) => (n === 0 ? { status: 202, delayMs: 3000 } : { status: 202 })
    const timeouts = client({ timeoutMs: 1000 })
    timeouts.track(event(2))
    await timeouts.flush()
    assert.equal(received.length, 2)
    assert.deepEqual(received[0]!.events, received[1]!.events)
    assert.deepEqual(timeouts.stats, { queued: 0, inFlight: 0, sent: 1, failed: 0, retries: 1, batches: 1 })
    await events.close()
    await timeouts.close()
  })

  it('gives up after maxRetries with an EventsDeliveryError naming the ids', async () => {
    script = () => ({ status: 503 })
    const events = client({ maxRetries: 2 })
    const id = events.track(event(1))
    const err = await events.flush().then(
      () => assert.fail('flush resolved'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof EventsDeliveryError, String(err))
    assert.equal(err.code, 'undelivered')
    assert.equal(err.attempts, 3)
    assert.equal(err.status, 503)
    assert.deepEqual(err.eventIds, [id])
    assert.equal(received.length, 3)
    assert.deepEqual(events.stats, { queued: 0, inFlight: 0, sent: 0, failed: 1, retries: 2, batches: 0 })
    await events.close()
  })
})

describe('refusals', () => {
  it('never retries 400, 401, 403 or 413, and rejects with the server details', async () => {
    const details = [{ field: 'body[0].data', message: 'must be object' }]
    for (const [status, code] of [
      [400, 'validation_failed'],
      [401, 'unauthorized'],
      [403, 'forbidden'],
      [413, 'payload_too_large'],
    ] as const) {
      received = []
      script = () => ({ status, body: errorBody(code, details) })
      const events = client({ maxRetries: 5 })
      const ids = [events.track(event(1)), events.track(event(2))]
      const err = await events.flush().then(
        () => assert.fail('flush resolved'),
        (e: unknown) => e,
      )
      assert.ok(err instanceof EventsRejectedError, String(err))
      assert.equal(err.status, status)
      assert.equal(err.serverCode, code)
      assert.deepEqual(err.details, details)
      assert.deepEqual(err.eventIds, ids)
      assert.match(err.message, new RegExp(`${status} ${code}`))
      assert.equal(received.length, 1, `${status} was retried`)
      assert.deepEqual(events.stats, { queued: 0, inFlight: 0, sent: 0, failed: 2, retries: 0, batches: 0 })
      await events.close()
    }
  })

  it('reports a refused batch that no flush waits for to onError', async () => {
    script = () => ({ status: 400, body: errorBody('validation_failed', [{ field: 'body', message: 'no' }]) })
    const errors: EventsClientError[] = []
    const reported = Promise.withResolvers<void>()
    const events = client({
      batchSize: 1,
      onError: (err) => {
        errors.push(err)
        reported.resolve()
      },
    })
    events.track(event(1))
    await reported.promise
    assert.ok(errors[0] instanceof EventsRejectedError)
    assert.equal(errors[0].status, 400)
    await events.close()
  })
})

describe('batching', () => {
  it('sends a batch as soon as batchSize events wait, the rest on flush', async () => {
    const events = client({ batchSize: 3 })
    const ids = Array.from({ length: 7 }, (_, i) => events.track(event(i)))
    await requestsReceived(2)
    assert.deepEqual(sizes(), [3, 3])
    assert.equal(events.stats.queued, 1)
    await events.flush()
    assert.deepEqual(sizes(), [3, 3, 1])
    assert.deepEqual(received.flatMap((r) => r.events.map((e) => e.id)).sort(), [...ids].sort())
    await events.close()
  })

  it('cuts batches at 500 events at most, and refuses a batchSize over 500', async () => {
    assert.throws(() => client({ batchSize: 501 }), RangeError)
    assert.throws(() => client({ batchSize: 0 }), RangeError)
    const events = client({ batchSize: 500 })
    for (let i = 0; i < 1200; i++) events.track(event(i))
    await events.flush()
    assert.deepEqual([...sizes()].sort((a, b) => b - a), [500, 500, 200])
    assert.equal(events.stats.sent, 1200)
    await events.close()
  })

  it('cuts batches before maxBatchBytes of JSON', async () => {
    const big = (i: number) => event(i, { data: { host: 'h', path: '/', padding: 'x'.repeat(20_000) } })
    const events = client({ batchSize: 100, maxBatchBytes: 50_000 })
    for (let i = 0; i < 5; i++) events.track(big(i))
    await events.flush()
    assert.deepEqual(sizes(), [2, 2, 1])
    await events.close()
  })

  it('keeps at most `concurrency` batches in flight', async () => {
    script = () => ({ status: 202, delayMs: 30 })
    const events = client({ batchSize: 1, concurrency: 2 })
    for (let i = 0; i < 8; i++) events.track(event(i))
    await events.flush()
    assert.equal(received.length, 8)
    assert.equal(maxActive, 2)
    await events.close()
  })

  it('sends what waits after flushIntervalMs without a flush', async () => {
    const events = client({ flushIntervalMs: 20 })
    events.track(event(1))
    events.track(event(2))
    await requestsReceived(1)
    assert.deepEqual(sizes(), [2])
    await events.close()
  })
})

describe('close and exit', () => {
  it('close() flushes, is idempotent, and track() afterwards throws', async () => {
    const events = client()
    events.track(event(1))
    events.track(event(2))
    const closing = events.close()
    assert.equal(events.close(), closing)
    await closing
    assert.deepEqual(sizes(), [2])
    assert.throws(() => events.track(event(3)), (err: unknown) => err instanceof EventsClientError && err.code === 'closed')
  })

  it('flushes on beforeExit: a process that only tracks still delivers', async () => {
    const source = [
      `import { createEventsClient } from './src/events/client.ts'`,
      `const events = createEventsClient({ url: ${JSON.stringify(url)}, token: 't', flushIntervalMs: 60000 })`,
      `events.track({ session_id: 's', category: 'c', name: 'n', data: {}, timestamp: '2021-01-01 00:00:00' })`,
    ].join('\n')
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const [code] = (await once(child, 'exit')) as [number | null]
    assert.equal(code, 0, stderr)
    assert.deepEqual(sizes(), [1])
  })
})

describe('track', () => {
  it('refuses an event the intake would refuse, naming each field, and queues nothing', () => {
    const events = client()
    const bad = { session_id: '', category: 'c', data: [], timestamp: 't', extra: 1 } as unknown as IncomingEvent
    assert.throws(
      () => events.track(bad),
      (err: unknown) => {
        assert.ok(err instanceof EventValidationError)
        assert.equal(err.code, 'invalid_event')
        const fields = err.details.map((d) => d.field).sort()
        assert.deepEqual(fields, ['event.data', 'event.extra', 'event.name', 'event.session_id'])
        return true
      },
    )
    assert.throws(() => events.track(event(1, { id: 'not-a-uuid' })), /event\.id/)
    assert.throws(() => events.track(null as unknown as IncomingEvent), /event must be an object/)
    const huge = event(1, { data: { blob: 'x'.repeat(40_000) } })
    assert.throws(() => events.track(huge), /bytes of JSON/)
    assert.equal(events.stats.queued, 0)
  })

  it('keeps the event as it was when tracked, and refuses more than maxPending', async () => {
    const events = client({ maxPending: 2 })
    const mutable = event(1)
    events.track(mutable)
    mutable.name = 'changed'
    events.track(event(2))
    assert.throws(() => events.track(event(3)), (err: unknown) => err instanceof EventsClientError && err.code === 'queue_full')
    await events.flush()
    assert.equal(received[0]!.events[0]!.name, 'pageview')
    await events.close()
  })
})
