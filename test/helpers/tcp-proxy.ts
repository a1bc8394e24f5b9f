/**
 * A TCP proxy in front of a real dependency (the shared Redis or PostgreSQL), which a test
 * can cut and restore: the dependency "goes down" for the process under test only, while
 * other tests keep using it. Cutting closes every open connection and stops listening, so
 * new connections are refused, as when the dependency's process died; stalling forwards
 * nothing while keeping every connection open, as when it hangs.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

/** A proxy the test controls. */
export interface TcpProxy {
  /** The port to connect to instead of the dependency's. */
  port: number
  /** Closes every open connection and refuses new ones until {@link TcpProxy.restore}. */
  cut(): Promise<void>
  /**
   * The dependency hangs (as under SIGSTOP): connections stay open and new ones are
   * accepted, but nothing is forwarded either way until {@link TcpProxy.unstall}.
   */
  stall(): void
  /** Forwards again, what was held included. */
  unstall(): void
  /** Listens on the same port again. */
  restore(): Promise<void>
  /** Closes the proxy and every connection. */
  close(): Promise<void>
}

/** Starts a proxy on a free port of 127.0.0.1 forwarding to `target`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>()
  let stalled = false
  /** Each connection, forwarding or held. */
  const links = new Set<{ forward(): void; hold(): void }>()
  const server: Server = createServer((client) => {
    let upstream: Socket | undefined
    const link = {
      forward() {
        if (client.destroyed) return
        if (!upstream) {
          upstream = connect(target.port, target.host)
          open.add(upstream)
          upstream.on('error', drop).on('close', drop)
        }
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      },
      hold() {
        client.unpipe()
        client.pause()
        upstream?.unpipe()
        upstream?.pause()
      },
    }
    const drop = () => {
      client.destroy()
      upstream?.destroy()
      open.delete(client)
      if (upstream) open.delete(upstream)
      links.delete(link)
    }
    open.add(client)
    links.add(link)
    client.on('error', drop).on('close', drop)
    if (stalled) client.pause()
    else link.forward()
  })
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  const cut = async () => {
    const closed = server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
    // Closed as the kernel closes a killed process's sockets. (Not resetAndDestroy: a
    // socket reset with a write pending can keep Node's exit waiting for ever.)
    for (const socket of open) socket.destroy()
    open.clear()
    await closed
  }
  await listen(0)
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no port')
  const port = address.port
  return {
    port,
    cut,
    restore: () => listen(port),
    stall() {
      stalled = true
      for (const link of links) link.hold()
    },
    unstall() {
      stalled = false
      for (const link of links) link.forward()
    },
    close: cut,
  }
}
