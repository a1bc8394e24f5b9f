/** Endpoints (`host:port`) and TCP reachability, for the local infrastructure commands. */
import { connect } from 'node:net'
import { quote } from '../quote.ts'

/** Where a service listens. */
export interface Endpoint {
  /** Host name or address, without brackets. */
  host: string
  /** TCP port. */
  port: number
}

const parsePort = (text: string, what: string): number => {
  const port = Number(text)
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65_535) {
    throw new Error(`${what}: port must be a number from 1 to 65535 (got ${quote(text)})`)
  }
  return port
}

/** Parses `host:port` (`[::1]:9092` for IPv6). Throws naming the value when it is not one. */
export function parseHostPort(value: string): Endpoint {
  const match = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d+)$/.exec(value.trim())
  const host = match?.[1] ?? match?.[2]
  if (!match || host === undefined || match[3] === undefined) {
    throw new Error(`expected host:port, got ${quote(value)}`)
  }
  return { host, port: parsePort(match[3], value) }
}

/** The endpoint of a service URL (`redis://h:p/0`, `postgres://u@h:p/db`), with the scheme's default port. */
export function urlEndpoint(url: string, defaultPort: number): Endpoint {
  const parsed = new URL(url)
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1'
  return { host, port: parsed.port === '' ? defaultPort : parsePort(parsed.port, url) }
}

/** `host:port`, with brackets around an IPv6 address. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.host.includes(':')
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`
}

/** Whether a host names this machine, so a service for it can be started here. */
export function isLocalHost(host: string): boolean {
  return ['localhost', '127.0.0.1', '::1', '0.0.0.0', '::'].includes(host) || host.startsWith('127.')
}

/** Whether something accepts TCP connections at the endpoint within `timeoutMs`. */
export function canConnect(endpoint: Endpoint, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: endpoint.host, port: endpoint.port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** Options for {@link waitForPort}. */
export interface WaitForPortOptions {
  /** Longest wait. */
  timeoutMs: number
  /** Pause between attempts. @defaultValue 250 */
  intervalMs?: number
  /** Returns a reason to stop waiting early (the process died), or undefined to go on. */
  giveUp?: () => string | undefined
  /** Aborts the wait (Ctrl-C). */
  signal?: AbortSignal
}

/**
 * Polls until the endpoint accepts connections. Resolves true when it does, false on
 * timeout; throws with the reason when `giveUp` returns one or the signal aborts.
 */
export async function waitForPort(endpoint: Endpoint, options: WaitForPortOptions): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    if (options.signal?.aborted) throw new Error('interrupted')
    const reason = options.giveUp?.()
    if (reason !== undefined) throw new Error(reason)
    if (await canConnect(endpoint)) return true
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 250))
  }
}
