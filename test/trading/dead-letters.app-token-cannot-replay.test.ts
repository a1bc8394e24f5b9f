/**
 * Hardening: an application's token (the events intake's caller) belongs to no user, so it
 * may neither list nor replay anyone's dead-lettered callbacks. Before the fix the owner
 * filter applied only to principals with a user id, and an application token replayed
 * another user's callback. Only the owning user or an admin may.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { createApp } from '../../src/events/apps.repository.ts'
import { finishOrder } from '../../src/trading/order-execution.ts'
import { openTradingApi, type TradingApi } from '../helpers/trading.ts'

let api: TradingApi
before(async () => {
  api = await openTradingApi()
})
after(async () => {
  await api.close()
})

test("an application token can neither list nor replay a user's dead-lettered callback; the owner and an admin can", async () => {
  const placed = await api.app.inject({
    method: 'POST',
    url: '/api/orders',
    payload: { user: 'user2', stockname: 'stock2', quantity: 1, side: 'buy', callback_url: 'http://127.0.0.1:9/hook' },
    headers: api.auth(api.tokens.user2),
  })
  assert.equal(placed.statusCode, 202, placed.body)
  const orderId = (placed.json() as { order_id: string }).order_id
  await finishOrder(api.testDb.db, orderId, { verified: false, reason: 'verification_failed' }, { retryForMs: 1000, schema: api.testDb.schema })
  await api.testDb.db.updateTable('webhook_deliveries').set({ status: 'dead', attempts: 3, last_error: 'connect ECONNREFUSED' }).where('order_id', '=', orderId).execute()
  const { id } = await api.testDb.db.selectFrom('webhook_deliveries').select('id').where('order_id', '=', orderId).executeTakeFirstOrThrow()

  const app = await createApp(api.testDb.db, 'dead-letter-replay-app')
  const asApp = api.auth(app.token)
  const list = await api.app.inject({ method: 'GET', url: '/api/webhooks/dead-letters', headers: asApp })
  assert.equal(list.statusCode, 403, list.body)
  const listForUser = await api.app.inject({ method: 'GET', url: '/api/webhooks/dead-letters?user=user2', headers: asApp })
  assert.equal(listForUser.statusCode, 403, listForUser.body)
  const replay = await api.app.inject({ method: 'POST', url: `/api/webhooks/dead-letters/${id}/replay`, headers: asApp })
  assert.equal(replay.statusCode, 403, replay.body)
  const stillDead = await api.testDb.db.selectFrom('webhook_deliveries').select('status').where('id', '=', id).executeTakeFirstOrThrow()
  assert.equal(stillDead.status, 'dead')

  const byAdmin = await api.app.inject({ method: 'GET', url: '/api/webhooks/dead-letters?user=user2', headers: api.auth(api.tokens.admin) })
  assert.equal(byAdmin.statusCode, 200, byAdmin.body)
  assert.deepEqual((byAdmin.json() as { items: Array<{ id: string }> }).items.map((item) => item.id), [id])
  const byOwner = await api.app.inject({ method: 'POST', url: `/api/webhooks/dead-letters/${id}/replay`, headers: api.auth(api.tokens.user2) })
  assert.equal(byOwner.statusCode, 202, byOwner.body)
})
