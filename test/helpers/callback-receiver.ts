/**
 * A caller's callback endpoint: a real HTTP server recording each delivery, and checking
 * its Standard Webhooks signature with the independent `standardwebhooks` package.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'

/** One delivery as received. */
export interface ReceivedCallback {
  webhookId: string
  orderId: string
  status: string
  reason: string | null
  /** Whether the signature verified with the user's secret. */
  verified: boolean
  at: number
}

/** The receiving server. */
export interface CallbackReceiver {
  url: string
  received: ReceivedCallback[]
  /** Status answered to the next requests (default 204); a function may decide per request. */
  respond: (callback: ReceivedCallback) => number
  close(): Promise<void>
}

/** Starts a receiver; `secretOf(user)` gives the secret to verify a user's callbacks with. */
export async function startCallbackReceiver(secretOf: (user: string) => string | undefined): Promise<CallbackReceiver> {
  const receiver: CallbackReceiver = { url: '', received: [], respond: () => 204, close: async () => {} }
  const server: Server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      body += chunk
    })
    req.on('end', () => {
      const payload = JSON.parse(body) as { data: { order_id: string; user: string; status: string; reason: string | null } }
      const secret = secretOf(payload.data.user)
      let verified = false
      if (secret) {
        try {
          new Webhook(secret).verify(body, {
            'webhook-id': String(req.headers['webhook-id']),
            'webhook-timestamp': String(req.headers['webhook-timestamp']),
            'webhook-signature': String(req.headers['webhook-signature']),
          })
          verified = true
        } catch {
          verified = false
        }
      }
      const callback: ReceivedCallback = {
        webhookId: String(req.headers['webhook-id']),
        orderId: payload.data.order_id,
        status: payload.data.status,
        reason: payload.data.reason,
        verified,
        at: Date.now(),
      }
      receiver.received.push(callback)
      res.writeHead(receiver.respond(callback)).end()
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  receiver.close = async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return receiver
}
