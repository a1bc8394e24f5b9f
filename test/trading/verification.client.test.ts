/** The verification API client against a local fake API speaking real HTTP. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, test } from 'node:test'
import { createVerificationClient, type VerificationClient } from '../../src/trading/verification.client.ts'
import { waitFor } from '../helpers/infra.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

type Handler = (body: Record<string, unknown>, res: ServerResponse, req: IncomingMessage) => void

/** A fake verification API: `handle` decides each answer (or never answers). */
async function startApi(handle: Handler): Promise<{ url: string; server: Server; requests: Array<Record<string, unknown>> }> {
  const requests: Array<Record<string, unknown>> = []
  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    let text = ''
    req.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
    req.on('end', () => {
      const body = JSON.parse(text) as Record<string, unknown>
      requests.push(body)
      handle(body, res, req)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  closers.push(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/verify`, server, requests }
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

function client(url: string, options: { retryBaseMs?: number } = {}): VerificationClient {
  const c = createVerificationClient({ url, maxConnections: 50, retryBaseMs: options.retryBaseMs ?? 20, retryMaxMs: 100 })
  closers.push(() => c.close())
  return c
}

test('{"result": 0} is verified, another result or a 4xx is failed; the request carries user and order id', async () => {
  const { url, requests } = await startApi((body, res) => {
    if (body.user === 'user1') json(res, 200, { result: 0 })
    else if (body.user === 'user2') json(res, 200, { result: 1 })
    else if (body.user === 'user3') json(res, 400, { error: 'no' })
    else json(res, 404, {})
  })
  const verifier = client(url)
  const deadline = Date.now() + 5000
  assert.equal(await verifier.verify({ orderId: 'o1', user: 'user1' }, deadline), 'verified')
  assert.equal(await verifier.verify({ orderId: 'o2', user: 'user2' }, deadline), 'failed')
  assert.equal(await verifier.verify({ orderId: 'o3', user: 'user3' }, deadline), 'failed')
  assert.equal(await verifier.verify({ orderId: 'o4', user: 'user4' }, deadline), 'failed')
  assert.deepEqual(requests[0], { user: 'user1', order_id: 'o1' })
  assert.equal(requests.length, 4, 'a definite answer is not asked again')
})

test('an API that does not answer gives timeout at the deadline, and the request is aborted', async () => {
  let closedByClient = 0
  const { url } = await startApi((_body, res) => {
    res.on('close', () => closedByClient++)
  })
  const verifier = client(url)
  const started = Date.now()
  const deadline = started + 300
  assert.equal(await verifier.verify({ orderId: 'o1', user: 'user1' }, deadline), 'timeout')
  const elapsed = Date.now() - started
  // The upper bound leaves room for a busy machine, and stays under the backup timeouts
  // (the time left plus a second), so only the deadline's own abort passes.
  assert.ok(elapsed >= 300 - 2 && elapsed < 300 + 800, `timed out after ${elapsed} ms`)
  await waitFor(() => closedByClient === 1, { what: 'the server to see the request aborted' })
  assert.equal(await verifier.verify({ orderId: 'o2', user: 'user1' }, Date.now() - 1), 'timeout', 'a past deadline')
})

test('verifications wait concurrently, one connection each: none queues behind a slow answer', async () => {
  const held: ServerResponse[] = []
  const { url } = await startApi((_body, res) => {
    held.push(res)
    // Answers only once every request is waiting at once.
    if (held.length === 300) for (const r of held) json(r, 200, { result: 0 })
  })
  const verifier = createVerificationClient({ url, maxConnections: 300 })
  closers.push(() => verifier.close())
  const deadline = Date.now() + 10_000
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) => verifier.verify({ orderId: `o${i}`, user: 'user1' }, deadline)))
  assert.deepEqual(new Set(results), new Set(['verified']))
})

test('503s and unreadable answers are retried with backoff until an answer', async () => {
  let calls = 0
  const { url } = await startApi((_body, res) => {
    calls++
    if (calls <= 2) json(res, 503, { error: 'busy' })
    else if (calls === 3) res.writeHead(200).end('<html>proxy error</html>')
    else json(res, 200, { result: 0 })
  })
  assert.equal(await client(url).verify({ orderId: 'o1', user: 'user1' }, Date.now() + 5000), 'verified')
  assert.equal(calls, 4)
})

test('5xx until the deadline is a timeout, at the deadline', async () => {
  let calls = 0
  const { url } = await startApi((_body, res) => {
    calls++
    json(res, 500, {})
  })
  const started = Date.now()
  assert.equal(await client(url).verify({ orderId: 'o1', user: 'user1' }, started + 400), 'timeout')
  const elapsed = Date.now() - started
  assert.ok(elapsed >= 400 - 2 && elapsed < 400 + 800, `timed out after ${elapsed} ms`)
  assert.ok(calls >= 3, `retried (${calls} calls)`)
})

test('connection errors are retried until the API is up', async () => {
  // A free port with nothing listening yet: connections are refused.
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  const verifier = client(`http://127.0.0.1:${port}/verify`)
  const result = verifier.verify({ orderId: 'o1', user: 'user1' }, Date.now() + 10_000)
  const late = createServer((req, res) => {
    req.resume().on('end', () => json(res, 200, { result: 0 }))
  })
  closers.push(async () => {
    late.closeAllConnections()
    await new Promise((resolve) => late.close(resolve))
  })
  // Started after the first attempts have been refused.
  setTimeout(() => late.listen(port, '127.0.0.1'), 200)
  assert.equal(await result, 'verified')
})

test('an abandoned verification rejects with the reason instead of answering timeout', async () => {
  const { url, requests } = await startApi(() => {})
  const verifier = client(url)
  const controller = new AbortController()
  const result = verifier.verify({ orderId: 'o1', user: 'user1' }, Date.now() + 10_000, { signal: controller.signal })
  await waitFor(() => requests.length === 1, { what: 'the request to arrive' })
  controller.abort(new Error('shutting down'))
  await assert.rejects(result, /shutting down/)
})

test('close aborts what is in flight and refuses new verifications', async () => {
  const { url, requests } = await startApi(() => {})
  const verifier = createVerificationClient({ url, maxConnections: 5 })
  const result = verifier.verify({ orderId: 'o1', user: 'user1' }, Date.now() + 10_000)
  await waitFor(() => requests.length === 1, { what: 'the request to arrive' })
  await verifier.close()
  await assert.rejects(result, { name: 'VerificationClientClosedError' })
  await assert.rejects(verifier.verify({ orderId: 'o2', user: 'user1' }, Date.now() + 1000), { name: 'VerificationClientClosedError' })
  assert.equal(verifier.close(), verifier.close(), 'close is idempotent')
})
