/**
 * A simulation of the external verification API (the seed's `verify_user`), over real
 * HTTP: `POST /verify` with `{ "user": "user1", "order_id": "..." }` answers
 * `{"result": 0}` (verified) or `{"result": 1}` (not verified) after a random whole
 * number of seconds, 1 to 100 by default, as the real API does. Every pending answer is
 * only a timer, so thousands of requests can wait at once; `timeScale` shrinks the
 * seconds for tests (0.001 turns 1-100 s into 1-100 ms).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readBody, sendJson } from '../platform/http/plain.ts'

/** Options for {@link createVerificationSim}. */
export interface VerificationSimOptions {
  /** Interface to listen on. @defaultValue 127.0.0.1 */
  host?: string
  /** Port to listen on; 0 picks a free one. @defaultValue 8100 */
  port?: number
  /** Multiplies every delay (0.001 answers after milliseconds instead of seconds). @defaultValue 1 */
  timeScale?: number
  /** Shortest delay, in whole seconds before scaling. @defaultValue 1 */
  minSeconds?: number
  /** Longest delay, in whole seconds before scaling. @defaultValue 100 */
  maxSeconds?: number
  /** Fraction of requests answered `{"result": 1}` (not verified). @defaultValue 0 */
  failRate?: number
  /** Seed of the delays and failures, for repeatable runs. @defaultValue random */
  seed?: number
}

/** What the simulation has answered so far. */
export interface VerificationSimStats {
  /** Valid verification requests received. */
  received: number
  /** Requests waiting for their answer now. */
  pending: number
  /** Answered `{"result": 0}`. */
  verified: number
  /** Answered `{"result": 1}`. */
  failed: number
  /** Answered 4xx. */
  badRequests: number
  /** Callers that went away before their answer. */
  abandoned: number
}

/** A running (or not yet started) simulation. */
export interface VerificationSim {
  /** Starts listening; resolves to the URL of the verification endpoint. */
  listen(): Promise<string>
  /** The URL of the verification endpoint once listening. */
  readonly url: string | undefined
  readonly stats: Readonly<VerificationSimStats>
  /**
   * Stops accepting, answers 503 to every request still waiting (the caller retries
   * elsewhere or later) and closes the connections. Later calls return the same promise.
   */
  close(): Promise<void>
}

const MAX_BODY_BYTES = 16 * 1024
const USER = /^[A-Za-z0-9_.-]{1,64}$/

/** A small seeded generator (mulberry32): repeatable delays without a dependency. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}


function sendError(res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string>) {
  sendJson(res, status, { error: { code, message } }, headers)
}


/** Validates a verification request; a message naming the problem when it is not one. */
function parseRequest(text: string): { user: string; orderId: string | undefined } | string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return 'body is not JSON'
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'body must be a JSON object'
  const { user, order_id: orderId } = value as Record<string, unknown>
  if (typeof user !== 'string' || !USER.test(user)) return 'user must be an account name such as "user1"'
  if (orderId !== undefined && (typeof orderId !== 'string' || orderId.length > 128)) {
    return 'order_id must be a string of at most 128 characters'
  }
  return { user, orderId }
}

/** Creates the simulation; call {@link VerificationSim.listen} to start it. */
export function createVerificationSim(options: VerificationSimOptions = {}): VerificationSim {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 8100
  const timeScale = options.timeScale ?? 1
  const minSeconds = options.minSeconds ?? 1
  const maxSeconds = options.maxSeconds ?? 100
  const failRate = options.failRate ?? 0
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new RangeError('timeScale must be a positive number')
  if (!Number.isInteger(minSeconds) || !Number.isInteger(maxSeconds) || minSeconds < 0 || maxSeconds < minSeconds) {
    throw new RangeError('minSeconds and maxSeconds must be whole numbers with 0 <= minSeconds <= maxSeconds')
  }
  if (!(failRate >= 0 && failRate <= 1)) throw new RangeError('failRate must be between 0 and 1')
  const random = options.seed === undefined ? Math.random : seededRandom(options.seed)
  const stats: VerificationSimStats = { received: 0, pending: 0, verified: 0, failed: 0, badRequests: 0, abandoned: 0 }
  /** Answers waiting for their timer, so that close() can answer them at once. */
  const pending = new Map<ServerResponse, NodeJS.Timeout>()
  let url: string | undefined
  let closing: Promise<void> | undefined

  const verify = async (req: IncomingMessage, res: ServerResponse) => {
    const text = await readBody(req, MAX_BODY_BYTES)
    if (text === undefined) {
      stats.badRequests++
      sendError(res, 413, 'body_too_large', `the body exceeds ${MAX_BODY_BYTES} bytes`, { connection: 'close' })
      return
    }
    const request = parseRequest(text)
    if (typeof request === 'string') {
      stats.badRequests++
      sendError(res, 400, 'bad_request', request)
      return
    }
    if (closing) {
      sendError(res, 503, 'shutting_down', 'the verification API is shutting down', { connection: 'close' })
      return
    }
    stats.received++
    // Drawn when the request arrives, so a seeded run gives the same answers in arrival order.
    const seconds = minSeconds + Math.floor(random() * (maxSeconds - minSeconds + 1))
    const result = random() < failRate ? 1 : 0
    stats.pending++
    const timer = setTimeout(() => {
      pending.delete(res)
      stats.pending--
      if (result === 0) stats.verified++
      else stats.failed++
      sendJson(res, 200, { result })
    }, seconds * 1000 * timeScale)
    pending.set(res, timer)
    // A caller that gives up (its own deadline) frees its timer at once.
    res.on('close', () => {
      const waiting = pending.get(res)
      if (waiting === undefined) return
      clearTimeout(waiting)
      pending.delete(res)
      stats.pending--
      stats.abandoned++
    })
  }

  const server = createServer(
    {
      keepAlive: true,
      // A verification is answered up to 100 s after the request: nothing may cut the wait.
      requestTimeout: 0,
      headersTimeout: 60_000,
      keepAliveTimeout: 65_000,
      noDelay: true,
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (path === '/verify') {
        if (req.method !== 'POST') {
          sendError(res, 405, 'method_not_allowed', 'use POST', { allow: 'POST' })
          return
        }
        verify(req, res).catch((err: unknown) => {
          if (!res.headersSent) sendError(res, 400, 'bad_request', (err as Error).message)
        })
        return
      }
      if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, 200, { status: closing ? 'closing' : 'ok', pending: stats.pending })
        return
      }
      sendError(res, 404, 'not_found', 'try POST /verify or GET /health')
    },
  )
  // No per-server cap on connections or requests per socket: every verifier slot holds one.
  server.maxRequestsPerSocket = 0

  return {
    stats,
    get url() {
      return url
    },
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        // A large backlog: thousands of verifier connections open at the same moment.
        server.listen({ host, port, backlog: 8192 }, () => {
          server.off('error', reject)
          resolve()
        })
      })
      const address = server.address() as AddressInfo
      const shownHost = address.address.includes(':') ? `[${address.address}]` : address.address
      url = `http://${shownHost}:${address.port}/verify`
      return url
    },
    close() {
      closing ??= (async () => {
        const closed = server.listening
          ? new Promise<void>((resolve) => server.close(() => resolve()))
          : Promise.resolve()
        const answered: Array<Promise<unknown>> = []
        for (const [res, timer] of pending) {
          clearTimeout(timer)
          stats.pending--
          answered.push(new Promise((resolve) => res.once('finish', resolve).once('close', resolve)))
          sendError(res, 503, 'shutting_down', 'the verification API is shutting down', { connection: 'close' })
        }
        pending.clear()
        server.closeIdleConnections()
        // Once the 503s are out nothing is owed to anyone; a connection still reading a
        // request body gets a moment more.
        const cut = setTimeout(() => server.closeAllConnections(), 1000)
        await Promise.all(answered)
        server.closeAllConnections()
        await closed
        clearTimeout(cut)
      })()
      return closing
    },
  }
}
