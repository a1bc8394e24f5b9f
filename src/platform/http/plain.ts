/**
 * Helpers for the plain `node:http` servers Bourse runs beside Fastify: the fakes of
 * outside APIs (verification, eBay), which must answer exactly as those APIs do and
 * therefore carry none of the API's plugins.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Answers `body` as JSON with its length, and `headers`. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

/** Reads a request body up to `limit` bytes; undefined when it is larger. */
export async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
