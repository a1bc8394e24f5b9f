/**
 * `?limit=1e400` was coerced to Infinity, which Ajv let through the integer's bounds
 * (1-200), and the query failed in PostgreSQL: a 500 on every paged route (found by
 * test/scripts/openapi.fuzz.test.ts). A query value coercing to a number that is not
 * finite is now a 400 naming the field.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { openTradingApi, type TradingApi } from '../../helpers/trading.ts'

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

const paged = ['/api/orders', '/api/users/user1/transactions', '/api/webhooks/dead-letters', '/api/events', '/api/event-errors', '/api/sessions/s1/events']

test('a limit of 1e400 or -1e400 is a 400 naming querystring.limit on every paged route', async () => {
  const failures: string[] = []
  for (const path of paged) {
    for (const limit of ['1e400', '-1e400', '1e309', '-1e309']) {
      const res = await api.app.inject({ method: 'GET', url: `${path}?limit=${limit}`, headers: api.auth(api.tokens.admin) })
      const field = res.statusCode === 400 ? (res.json() as { error: { details?: Array<{ field: string }> } }).error.details?.[0]?.field : undefined
      if (field !== 'querystring.limit') failures.push(`${path}?limit=${limit}: ${res.statusCode} ${res.body.slice(0, 120)}`)
    }
  }
  assert.deepEqual(failures, [])
  const fine = await api.app.inject({ method: 'GET', url: '/api/orders?limit=2e1', headers: api.auth(api.tokens.admin) })
  assert.equal(fine.statusCode, 200, fine.body)
})
