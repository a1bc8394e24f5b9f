/** Idempotency keys: what a key may be, and the id a key stands for. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { IDEMPOTENCY_KEY, idempotentId } from '../../src/platform/idempotency.ts'

test('a key is 1 to 255 visible ASCII characters', () => {
  for (const key of ['a', 'order-1', '~!', 'k'.repeat(255)]) assert.ok(IDEMPOTENCY_KEY.test(key), key)
  for (const key of ['', 'with space', 'k'.repeat(256), 'é', 'tab\t']) assert.ok(!IDEMPOTENCY_KEY.test(key), key)
})

test('the id of a key is the same every time, a UUID of the v8 layout, and differs by namespace, owner and key', () => {
  const id = idempotentId('bourse-btc-order', 'user1', 'k1')
  assert.equal(idempotentId('bourse-btc-order', 'user1', 'k1'), id)
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  const others = [
    idempotentId('bourse-order', 'user1', 'k1'),
    idempotentId('bourse-btc-order', 'user2', 'k1'),
    idempotentId('bourse-btc-order', 'user1', 'k2'),
    // The parts are separated: moving a character from one to the next is another id.
    idempotentId('bourse-btc-order', 'user1k', '1'),
  ]
  assert.equal(new Set([id, ...others]).size, 5)
})

test('the ids of keys stored before stay the ids of those keys (a retry must find its order)', () => {
  assert.equal(idempotentId('bourse-btc-order', 'user1', 'k1'), 'e0b89f28-a9ff-8b3f-8ee4-c8c117c91215')
  assert.equal(idempotentId('bourse-order', 'u', 'retry-7'), '3e4d4616-bbf5-84c9-a0ea-5299dd9e1ab6')
  // The four variant digits: the hash's 17th digit had each of the low two bits 0 to 3.
  assert.equal(idempotentId('bourse-btc-order', 'user1', 'k3'), '2f767de0-d3ed-8b4d-be1e-93215e0943e1')
  assert.equal(idempotentId('bourse-btc-order', 'user1', 'k10'), '81424b29-3b56-8ba6-9b98-f62aadd601c9')
})
