/**
 * One address cannot hold every connection of the server: beyond
 * HTTP_MAX_CONNECTIONS_PER_ADDRESS open connections, a new one from that address is
 * closed at once, another address is still served, and once one closes a new one is
 * taken again.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { Redis } from 'ioredis'
import { createHttpApp, type HttpApp } from '../../../src/platform/http/app.ts'
import { createLogger } from '../../../src/platform/logger.ts'
import { closeTestRedis, openTestRedis, testConfig, waitFor } from '../../helpers/infra.ts'

const CAP = 3
let redis: Redis
let app: HttpApp
let port: number
const sockets: Socket[] = []

before(async () => {
  redis = await openTestRedis()
  const config = testConfig({ HTTP_MAX_CONNECTIONS_PER_ADDRESS: String(CAP), RATE_LIMIT_MAX: '1000' })
  app = await createHttpApp({ config, log: createLogger({ level: 'silent', pretty: false }), redis }, { title: 'cap', version: '0' })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  port = Number(new URL(address).port)
})
after(async () => {
  for (const socket of sockets) socket.destroy()
  await app.close()
  await closeTestRedis(redis)
})

/**
 * A keep-alive connection from `localAddress` that sends one `GET /livez`: resolves with
 * the socket once answered, or with null when the server closes it without an answer.
 */
async function served(localAddress = '127.0.0.1'): Promise<Socket | null> {
  const socket = connect({ port, host: '127.0.0.1', localAddress })
  sockets.push(socket)
  socket.on('error', () => {})
  let text = ''
  socket.setEncoding('utf8')
  const answered = new Promise<boolean>((resolve) => {
    socket.on('data', (chunk: string) => {
      text += chunk
      if (/^HTTP\/1\.1 200 [\s\S]*\r\n\r\n[\s\S]*"status"/.test(text)) resolve(true)
    })
    socket.on('close', () => resolve(false))
  })
  await once(socket, 'connect').catch(() => {})
  socket.write('GET /livez HTTP/1.1\r\nhost: test\r\nconnection: keep-alive\r\n\r\n')
  return (await answered) ? socket : null
}

describe('connections per address', () => {
  test(`the connection after ${CAP} open ones is closed; another address is served; a freed slot is taken again`, async () => {
    const open: Socket[] = []
    for (let i = 0; i < CAP; i++) {
      const socket = await served()
      assert.ok(socket, `connection ${i + 1} is served`)
      open.push(socket)
    }
    assert.equal(await served(), null, 'one more from the same address is closed unanswered')

    // Every loopback address reaches the server; 127.0.0.2 is another client.
    const other = await served('127.0.0.2')
    assert.ok(other, 'another address is still served')

    const first = open.shift()!
    first.end()
    await once(first, 'close')
    // The server counts the connection gone when its side closes, a moment after the client's.
    const again = await waitFor(() => served(), { timeoutMs: 5000, intervalMs: 20, what: 'a new connection to be served' })
    assert.ok(again)
    assert.equal(await served(), null, 'the cap holds again')
  })
})
