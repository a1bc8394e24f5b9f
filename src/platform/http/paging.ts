/**
 * The HTTP side of keyset paging (see `../db/keyset.ts`): the `cursor` and `limit`
 * query fields and the page schema every paged route answers with.
 */
import Type from 'typebox'

/** Page length when the request gives none. */
export const DEFAULT_PAGE_LIMIT = 50
/** Longest page. */
export const MAX_PAGE_LIMIT = 200

/** The `cursor` and `limit` query fields, to spread into a route's querystring schema. */
export const pageQueryFields = {
  cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 300, description: '`next_cursor` of the previous page' })),
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT, description: 'Most items in the page' }),
  ),
}

/** The querystring of a paged route without filters. */
export const PageQuery = Type.Object(pageQueryFields, { additionalProperties: false })

/** The schema of a page of `item`s: `{ items, next_cursor }`, `next_cursor` null on the last page. */
export function PageSchema<T extends Type.TSchema>(item: T) {
  return Type.Object({
    items: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last' }),
  })
}

/** The `{ cursor, limit }` of a paged route's query, with the default limit applied. */
export function pageRequest(query: { cursor?: string | undefined; limit?: number | undefined }): { cursor: string | undefined; limit: number } {
  return { cursor: query.cursor, limit: query.limit ?? DEFAULT_PAGE_LIMIT }
}
