/**
 * Idempotency keys (the `Idempotency-Key` header): what a key may be, and the id of the
 * record a key stands for, so that a retry finds its record by primary key.
 */
import { hash } from 'node:crypto'

/** A key as the header may carry it: 1 to 255 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/

/**
 * The id a caller's key stands for in `namespace`: a name-based UUID (v8 layout) of
 * (namespace, owner, key), the same on every retry and in every process.
 */
export function idempotentId(namespace: string, owner: string, key: string): string {
  // The one-shot hash: no Hash object per request.
  const bytes = hash('sha256', `${namespace}\0${owner}\0${key}`, 'buffer').subarray(0, 16)
  bytes[6] = (bytes[6]! & 0x0f) | 0x80
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
