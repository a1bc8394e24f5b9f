/** The event type registry against the real PostgreSQL, in a schema of its own. */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import {
  createEventTypeCache,
  deleteEventType,
  findEventType,
  listEventTypes,
  upsertEventType,
} from '../../src/events/event-types.repository.ts'
import { InvalidEventTypeError, validateEvent } from '../../src/events/event-validation.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'

let testDb: TestDb
before(async () => {
  testDb = await openTestDb()
})
after(async () => {
  await testDb.close()
})

const videoSchema = { type: 'object', required: ['seconds'], properties: { seconds: { type: 'number', minimum: 0 } } }
const options = { unknownType: 'reject', futureToleranceMs: 0 } as const
const play = (data: Record<string, unknown>) => ({
  session_id: 's',
  category: 'video',
  name: 'play',
  data,
  timestamp: '2021-01-01 00:00:00',
})

test('the migration registers the three challenge types', async () => {
  const types = await listEventTypes(testDb.db)
  assert.deepEqual(
    types.map((t) => [t.category, t.name]),
    [
      ['form interaction', 'submit'],
      ['page interaction', 'cta click'],
      ['page interaction', 'pageview'],
    ],
  )
  const cta = await findEventType(testDb.db, 'page interaction', 'cta click')
  assert.deepEqual(cta?.schema.required, ['host', 'path', 'element'])
  assert.equal(await findEventType(testDb.db, 'page interaction', 'nothing'), undefined)
})

test('upsert registers, replaces, keeps or clears the description, and delete removes', async () => {
  const { db } = testDb
  const first = await upsertEventType(db, { category: 'video', name: 'play', schema: videoSchema, description: 'a video starts' })
  assert.equal(first.created, true)
  assert.deepEqual(first.type.schema, videoSchema)
  assert.equal(first.type.description, 'a video starts')

  const changed = { ...videoSchema, required: [] }
  const second = await upsertEventType(db, { category: 'video', name: 'play', schema: changed })
  assert.equal(second.created, false)
  assert.deepEqual(second.type.schema, changed)
  assert.equal(second.type.description, 'a video starts', 'kept when not given')
  assert.ok(second.type.updated_at >= first.type.updated_at)
  assert.deepEqual(second.type.created_at, first.type.created_at)

  const third = await upsertEventType(db, { category: 'video', name: 'play', schema: videoSchema, description: null })
  assert.equal(third.type.description, null, 'cleared by null')

  assert.equal(await deleteEventType(db, 'video', 'play'), true)
  assert.equal(await deleteEventType(db, 'video', 'play'), false)
  assert.equal(await findEventType(db, 'video', 'play'), undefined)
})

test('an invalid schema or name is refused and nothing is stored', async () => {
  const { db } = testDb
  const refused: Array<[Parameters<typeof upsertEventType>[1], string, RegExp]> = [
    [{ category: 'video', name: 'play', schema: { type: 'object', requird: ['x'] } }, 'schema', /unknown keyword: "requird"/],
    [{ category: 'video', name: 'play', schema: { type: 'numbr' } }, 'schema', /not a valid JSON Schema/],
    [{ category: '', name: 'play', schema: videoSchema }, 'category', /category must be 1 to 100 characters/],
    [{ category: 'video', name: 'x'.repeat(101), schema: videoSchema }, 'name', /name must be 1 to 100 characters/],
  ]
  for (const [input, field, message] of refused) {
    await assert.rejects(
      upsertEventType(db, input),
      (err: unknown) => err instanceof InvalidEventTypeError && err.field === field && message.test(err.message),
    )
  }
  assert.equal((await listEventTypes(db)).length, 3)
})

test('the cache reloads after its interval, or at once on refresh, compiling only what changed', async () => {
  const { db } = testDb
  const cache = createEventTypeCache(db, { refreshMs: 60_000 })
  const before = await cache.get()
  assert.equal(before.size, 3)
  assert.equal(await cache.get(), before, 'within the interval: the same registry, no query')

  await upsertEventType(db, { category: 'video', name: 'play', schema: videoSchema })
  assert.equal((await cache.get()).validatorFor('video', 'play'), undefined, 'not seen before the interval')
  const after = await cache.refresh()
  assert.equal(after.size, 4)
  assert.equal(after.validatorFor('page interaction', 'pageview'), before.validatorFor('page interaction', 'pageview'))
  assert.equal(validateEvent(play({ seconds: 3 }), after, options).ok, true)
  assert.deepEqual(validateEvent(play({ seconds: -1 }), after, options), {
    ok: false,
    reasons: [{ field: '/data/seconds', message: 'must be >= 0' }],
  })

  const eager = createEventTypeCache(db, { refreshMs: 0 })
  await eager.get()
  await deleteEventType(db, 'video', 'play')
  const reloaded = await eager.get()
  assert.equal(reloaded.validatorFor('video', 'play'), undefined, 'refreshMs 0 reloads on every get')
  assert.deepEqual(validateEvent(play({ seconds: 3 }), reloaded, options).ok, false)
})
