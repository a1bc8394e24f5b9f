/**
 * An order's event stream outlives the token cache: once its token is revoked, the
 * stream ends within AUTH_CACHE_MS, while a stream on a valid token stays open (past
 * the request timeout too, which covers receiving a request, not its answer).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createApiToken, revokeApiToken } from '../../src/auth/index.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

const AUTH_CACHE_MS = 1000
/** Time for the re-check's query and the end to reach the client. */
const SLACK_MS = 1000
const HEARTBEAT_MS = 200

let api: TradingApi
let address: string
before(async () => {
  api = await openTradingApi(
    { AUTH_CACHE_MS: String(AUTH_CACHE_MS), HTTP_REQUEST_TIMEOUT_MS: '500', HTTP_HEADERS_TIMEOUT_MS: '500' },
    { heartbeatMs: HEARTBEAT_MS },
  )
  address = await api.app.listen({ port: 0, host: '127.0.0.1' })
})
after(async () => {
  await api.close()
})

/** An open event stream: what it has sent, and a promise settled when it ends. */
interface Stream {
  text: () => string
  ended: Promise<number>
  /** Resolves once the stream has sent `n` more keep-alives than now. */
  keepAlives: (n: number) => Promise<void>
  cancel: () => Promise<void>
}

async function openStream(orderId: string, token: string): Promise<Stream> {
  const res = await fetch(`${address}/api/orders/${orderId}/events`, { headers: api.auth(token) })
  assert.equal(res.status, 200)
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let waiters: Array<() => void> = []
  const ended = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }))
      if (done) return Date.now()
      text += decoder.decode(value, { stream: true })
      for (const wake of waiters) wake()
      waiters = []
    }
  })()
  const count = () => text.split(': keep-alive').length - 1
  return {
    text: () => text,
    ended,
    keepAlives: async (n) => {
      const target = count() + n
      while (count() < target) await new Promise<void>((resolve) => waiters.push(resolve))
    },
    cancel: () => reader.cancel(),
  }
}

/** Resolves with the stream's end time, or rejects after `ms`. */
function endedWithin(stream: Stream, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream was still open ${ms} ms after the revocation`)), ms)
  })
  return Promise.race([stream.ended, deadline]).finally(() => clearTimeout(timer))
}

describe('an order stream whose token is revoked', () => {
  it('ends within AUTH_CACHE_MS; a stream on a valid token goes on', async () => {
    const revoked = await createApiToken(api.testDb.db, { userId: 'user1' })
    const kept = await createApiToken(api.testDb.db, { userId: 'user1' })
    const placed = await api.app.inject({
      method: 'POST',
      url: '/api/orders',
      payload: { user: 'user1', stockname: 'stock1', quantity: 1, side: 'buy' },
      headers: api.auth(kept.token),
    })
    assert.equal(placed.statusCode, 202, placed.body)
    const orderId = (placed.json() as { order_id: string }).order_id

    const doomed = await openStream(orderId, revoked.token)
    const lasting = await openStream(orderId, kept.token)
    // Both streams are live (their first keep-alive came) before the revocation.
    await Promise.all([doomed.keepAlives(1), lasting.keepAlives(1)])
    assert.match(doomed.text(), /event: status/)

    assert.equal(await revokeApiToken(api.testDb.db, revoked.id), 'revoked')
    const revokedAt = Date.now()
    const endedAt = await endedWithin(doomed, AUTH_CACHE_MS + SLACK_MS)
    assert.ok(endedAt - revokedAt <= AUTH_CACHE_MS + SLACK_MS)

    // The other stream still sends keep-alives, past AUTH_CACHE_MS and the 500 ms request timeout.
    await lasting.keepAlives(2)
    const settled = await Promise.race([lasting.ended.then(() => 'ended'), Promise.resolve('open')])
    assert.equal(settled, 'open')
    await lasting.cancel()

    const again = await fetch(`${address}/api/orders/${orderId}/events`, { headers: api.auth(revoked.token) })
    assert.equal(again.status, 401, 'a revoked token cannot open a new stream')
    await again.body?.cancel()
  })
})
