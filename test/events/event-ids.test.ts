/** The intake's event ids: UUIDv7 as a JSON array, own ids kept, distinct and time-ordered. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { eventIdsJson, MAX_IDS_PER_BATCH } from '../../src/events/event-ids.ts'

const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const fresh = (count: number) => Array.from({ length: count }, () => ({}))
const idsOf = (json: string) => JSON.parse(json) as string[]

test('every id is a UUIDv7 carrying the given millisecond, in counter order', () => {
  const at = Date.parse('2026-11-22T10:00:00.123Z')
  const ids = idsOf(eventIdsJson(fresh(300), at))
  assert.equal(ids.length, 300)
  for (const id of ids) {
    assert.match(id, uuidV7)
    assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at, `${id} holds the time`)
  }
  assert.deepEqual(
    ids.map((id) => parseInt(id.slice(15, 18), 16)),
    ids.map((_, i) => i),
    'the 12-bit counter is the place in the request',
  )
  assert.deepEqual([...ids].sort(), ids, 'sorted as text, they keep the request order')
})

test("an event's own id is kept as sent, in its place", () => {
  const own = 'ABCDEF01-2345-4678-9abc-def012345678'
  const ids = idsOf(eventIdsJson([{}, { id: own }, {}, { id: undefined }]))
  assert.equal(ids.length, 4)
  assert.equal(ids[1], own)
  for (const i of [0, 2, 3]) assert.match(ids[i]!, uuidV7)
  assert.equal(ids[2]!.slice(14, 18), '7002')
  assert.throws(() => eventIdsJson([{}, { id: 'not-a-uuid' }]), /event 1's id is not a UUID/)
})

test('requests of the same millisecond get different ids; later ones sort after earlier ones', () => {
  const at = Date.now()
  const seen = new Set<string>()
  for (let request = 0; request < 2000; request++) for (const id of idsOf(eventIdsJson(fresh(5), at))) seen.add(id)
  assert.equal(seen.size, 10_000)
  const [earlier] = idsOf(eventIdsJson(fresh(1), at))
  const [later] = idsOf(eventIdsJson(fresh(1), at + 1))
  assert.ok(later! > earlier!, `${later} sorts after ${earlier}`)
})

test('sizes: one id, the largest batch, one too many, none', () => {
  assert.equal(idsOf(eventIdsJson(fresh(1))).length, 1)
  const largest = idsOf(eventIdsJson(fresh(MAX_IDS_PER_BATCH)))
  assert.equal(largest.length, MAX_IDS_PER_BATCH)
  assert.equal(new Set(largest).size, MAX_IDS_PER_BATCH)
  assert.equal(largest.at(-1)!.slice(15, 18), 'fff')
  assert.throws(() => eventIdsJson(fresh(MAX_IDS_PER_BATCH + 1)), /at most 4096 ids/)
  assert.equal(eventIdsJson([]), '[]')
  // A smaller batch after a larger one reuses the space without leaking the larger one's text.
  assert.equal(idsOf(eventIdsJson(fresh(2))).length, 2)
})
