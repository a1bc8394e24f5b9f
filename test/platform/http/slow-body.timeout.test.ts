/**
 * A request whose body (or head) never comes no longer holds its connection for ever:
 * the server answers 408 and closes it within HTTP_REQUEST_TIMEOUT_MS
 * (HTTP_HEADERS_TIMEOUT_MS for the head), while other clients are served meanwhile; a
 * long answer (an event stream) is not cut, since the timeout covers receiving the request.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createHttpApp, type HttpApp } from '../../../src/platform/http/app.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { closeTestRedis, openTestRedis, testConfig } from '../../helpers/infra.ts'

const REQUEST_TIMEOUT_MS = 2000
const HEADERS_TIMEOUT_MS = 400
// The head's bound (HEADERS_TIMEOUT_MS + SLACK_MS) stays below REQUEST_TIMEOUT_MS, so the
// head test fails if only the request timeout applied.
/** Node checks the timeouts on a timer (a quarter of the head timeout here), plus scheduling. */
const SLACK_MS = 1000

let redis: Redis
let app: HttpApp
let port: number
/** Every raw connection, destroyed at the end so a failing test cannot hold the server open. */
const sockets: Socket[] = []

before(async () => {
  redis = await openTestRedis()
  const config = testConfig({
    HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
  })
  app = await createHttpApp(
    { config, log: createLogger({ level: 'silent', pretty: false }), redis },
    {
      title: 'slow bodies',
      version: '0',
      routes: [
        async (routes) => {
          routes.post('/echo', async (request) => ({ got: request.body }))
          // An answer written for three request timeouts, a chunk at a time.
          routes.get('/slow-answer', async (request, reply) => {
            reply.hijack()
            reply.raw.writeHead(200, { 'content-type': 'text/plain' })
            let sent = 0
            const timer = setInterval(() => {
              reply.raw.write(`chunk ${++sent}\n`)
              if (sent === 15) {
                clearInterval(timer)
                reply.raw.end()
              }
            }, (3 * REQUEST_TIMEOUT_MS) / 15)
            request.raw.on('close', () => clearInterval(timer))
          })
        },
      ],
    },
  )
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  port = Number(new URL(address).port)
})
after(async () => {
  for (const socket of sockets) socket.destroy()
  await app.close()
  await closeTestRedis(redis)
})

/** A raw connection to the app, collecting what the server sends until it closes. */
async function openSocket(): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const socket = connect({ port, host: '127.0.0.1' })
  sockets.push(socket)
  let text = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => Date.now())
  await once(socket, 'connect')
  return { socket, received: () => text, closed }
}

/** Resolves with the close time, or rejects once `ms` passed with the socket still open. */
function closedWithin(closed: Promise<number>, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the server kept the connection open for more than ${ms} ms`)), ms)
  })
  return Promise.race([closed, deadline]).finally(() => clearTimeout(timer))
}

describe('slow clients', () => {
  test('a body announced and never sent: 408 and closed within the request timeout; others are served meanwhile', async () => {
    const slow = await openSocket()
    const sentAt = Date.now()
    slow.socket.write('POST /echo HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n')

    // Another client is served while the slow one waits.
    const res = await fetch(`http://127.0.0.1:${port}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { got: { a: 1 } })
    assert.equal(slow.socket.readyState, 'open', 'the slow request is still waiting')

    const closedAt = await closedWithin(slow.closed, REQUEST_TIMEOUT_MS + SLACK_MS)
    assert.ok(closedAt - sentAt >= REQUEST_TIMEOUT_MS - 50, `closed after ${closedAt - sentAt} ms, before the timeout`)
    assert.match(slow.received(), /^HTTP\/1\.1 408 /)
  })

  test('a body sent a byte at a time is cut at the request timeout too', async () => {
    const slow = await openSocket()
    slow.socket.write('POST /echo HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n')
    const drip = setInterval(() => slow.socket.write(' '), 100)
    try {
      await closedWithin(slow.closed, REQUEST_TIMEOUT_MS + SLACK_MS)
    } finally {
      clearInterval(drip)
    }
    assert.match(slow.received(), /^HTTP\/1\.1 408 /)
  })

  test('a head never finished is closed within the head timeout', async () => {
    const slow = await openSocket()
    const sentAt = Date.now()
    slow.socket.write('GET /health HTTP/1.1\r\nhost: test\r\n')
    const closedAt = await closedWithin(slow.closed, HEADERS_TIMEOUT_MS + SLACK_MS)
    assert.ok(closedAt - sentAt < REQUEST_TIMEOUT_MS, `closed after ${closedAt - sentAt} ms, not by the head timeout`)
    assert.match(slow.received(), /^HTTP\/1\.1 408 /)
  })

  test('a long answer is not cut by the request timeout', async () => {
    const startedAt = Date.now()
    const res = await fetch(`http://127.0.0.1:${port}/slow-answer`)
    assert.equal(res.status, 200)
    const text = await res.text()
    assert.ok(Date.now() - startedAt >= 2 * REQUEST_TIMEOUT_MS, 'the answer lasted past the request timeout')
    assert.equal(text.split('\n').filter(Boolean).length, 15, 'every chunk arrived')
  })
})
