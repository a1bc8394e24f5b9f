/** Standard Webhooks signatures, checked with the reference implementation (`standardwebhooks`). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { createWebhookSecret, signWebhook, webhookHeaders } from '../../../src/trading/webhooks/webhook-signing.ts'
import { createWebhookId } from './webhook-fixtures.ts'

const body = JSON.stringify({ type: 'order.filled', data: { id: 'b6f1', price: '12.5000' } })

test('a secret is whsec_ and 24 random bytes in base64', () => {
  const secret = createWebhookSecret()
  assert.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/)
  assert.equal(Buffer.from(secret.slice(6), 'base64').length, 24)
  assert.notEqual(createWebhookSecret(), secret)
})

test('headers verify with the standardwebhooks reference implementation', () => {
  const secret = createWebhookSecret()
  const id = createWebhookId()
  const headers = webhookHeaders(secret, id, body)
  assert.equal(headers['webhook-id'], id)
  assert.equal(headers['content-type'], 'application/json')
  assert.match(headers['webhook-timestamp'], /^\d{10}$/)
  assert.deepEqual(new Webhook(secret).verify(body, { ...headers }), JSON.parse(body))
})

test('the signature matches the reference for a fixed timestamp', () => {
  const secret = createWebhookSecret()
  const at = new Date('2025-06-01T12:00:00.000Z')
  const ours = signWebhook(secret, 'msg_1', at.getTime() / 1000, body)
  assert.equal(ours, new Webhook(secret).sign('msg_1', at, body))
  assert.match(ours, /^v1,[A-Za-z0-9+/]{43}=$/)
  assert.equal(webhookHeaders(secret, 'msg_1', body, at.getTime() + 999)['webhook-signature'], ours, 'seconds, rounded down')
})

test('a tampered body, id, timestamp or another secret fails verification', () => {
  const secret = createWebhookSecret()
  const headers = webhookHeaders(secret, createWebhookId(), body)
  const wh = new Webhook(secret)
  assert.throws(() => wh.verify(body.replace('12.5000', '99.5000'), { ...headers }), /No matching signature/)
  assert.throws(() => wh.verify(body, { ...headers, 'webhook-id': createWebhookId() }), /No matching signature/)
  const earlier = String(Number(headers['webhook-timestamp']) - 1)
  assert.throws(() => wh.verify(body, { ...headers, 'webhook-timestamp': earlier }), /No matching signature/)
  assert.throws(() => new Webhook(createWebhookSecret()).verify(body, { ...headers }), /No matching signature/)
})

test('an old attempt timestamp is refused by receivers, so each attempt signs its own', () => {
  const secret = createWebhookSecret()
  const headers = webhookHeaders(secret, createWebhookId(), body, Date.now() - 10 * 60_000)
  assert.throws(() => new Webhook(secret).verify(body, { ...headers }), /too old/)
})

test('a secret without the whsec_ prefix is refused', () => {
  assert.throws(() => signWebhook('c2VjcmV0', 'msg_1', 1, body), /whsec_/)
  assert.throws(() => signWebhook('whsec_', 'msg_1', 1, body), /empty/)
})
