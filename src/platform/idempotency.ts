/**
 * Idempotency keys (the `Idempotency-Key` header): what a key may be, and the id of the
 * record a key stands for, so that a retry finds its record by primary key.
 */
import { hash } from 'node:crypto'

/** A key as the header may carry it: 1 to 255 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/

/** The 17th digit of a UUID of the RFC 9562 variant, by the two low bits of the digit it replaces. */
const VARIANT_DIGITS = '89ab'

/**
 * The id a caller's key stands for in `namespace`: a name-based UUID (v8 layout) of
 * (namespace, owner, key), the same on every retry and in every process.
 */
export function idempotentId(namespace: string, owner: string, key: string): string {
  // The one-shot hash, as hex: no Hash object and no Buffer per request.
  const hex = hash('sha256', `${namespace}\0${owner}\0${key}`, 'hex')
  // The first 16 bytes, with version 8 in the 13th digit and the variant (binary 10) in the top bits of the 17th.
  const variant = VARIANT_DIGITS[Number.parseInt(hex[16]!, 16) & 3]
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}
