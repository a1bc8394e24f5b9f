/**
 * Opaque cursors for keyset pagination: the sort key of the last row of a page, so the
 * next page is an index range scan that costs the same however deep it is.
 */

/** Encodes the sort key of a page's last row. */
export function encodeCursor(values: readonly string[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url')
}

/** Decodes a cursor of `length` values; undefined when it is not one of ours. */
export function decodeCursor(cursor: string, length: number): string[] | undefined {
  try {
    const values: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (!Array.isArray(values) || values.length !== length) return undefined
    if (!values.every((v) => typeof v === 'string' && v.length <= 100)) return undefined
    return values as string[]
  } catch {
    return undefined
  }
}
