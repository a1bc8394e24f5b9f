/**
 * Views kept in memory under the tag they were built at, on the real Redis: served only
 * while the tag is current, rebuilt once however many reads wait, the tags of a turn read
 * by one call, memory bounded by bytes.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import type { Redis } from 'ioredis'
import { type BuiltView, createTaggedViews, type TagSource } from '../../src/platform/tagged-views.ts'
import { closeTestRedis, openTestRedis } from '../helpers/infra.ts'

let redis: Redis

before(async () => {
  redis = await openTestRedis()
})
beforeEach(() => redis.flushdb())
after(() => closeTestRedis(redis))

const GEN: TagSource = { key: 'test:gen' }
const STOCK: TagSource = { key: 'test:meta', field: 'g' }

/** A builder reading `test:data` with its tag in one MULTI, as a repository would; counts its builds. */
function dataBuilder(source: TagSource = GEN) {
  const build = async (): Promise<BuiltView | undefined> => {
    build.builds++
    const multi = redis.multi()
    if (source.field === undefined) multi.get(source.key)
    else multi.hget(source.key, source.field)
    const [[, tag], [, data]] = (await multi.get('test:data').exec()) as [[Error | null, string | null], [Error | null, string | null]]
    return data === null ? undefined : { tag: tag ?? null, text: `view of ${data}` }
  }
  build.builds = 0
  return build
}

/** Counts the tag-reading script's calls on `redis`. */
function countTagCalls(): { calls: number } {
  const counter = { calls: 0 }
  const scripted = redis as Redis & { bourseReadTags: (...args: unknown[]) => Promise<unknown> }
  const original = scripted.bourseReadTags.bind(redis)
  scripted.bourseReadTags = (...args: unknown[]) => {
    counter.calls++
    return original(...args)
  }
  return counter
}

test('a view is built once while its tag stands, and a read after a write gets the new one', async () => {
  const views = createTaggedViews(redis)
  const build = dataBuilder()
  await redis.multi().set('test:data', 'a').incr('test:gen').exec()
  assert.equal(await views.read('v', GEN, build), 'view of a')
  assert.equal(await views.read('v', GEN, build), 'view of a')
  assert.equal(build.builds, 1, 'the second read is served from memory')
  await redis.multi().set('test:data', 'b').incr('test:gen').exec()
  assert.equal(await views.read('v', GEN, build), 'view of b', 'a read after the write never gets the old view')
  assert.equal(build.builds, 2)
})

test('a hash field as the tag: a change of another key leaves the view current', async () => {
  const views = createTaggedViews(redis)
  const build = dataBuilder(STOCK)
  await redis.multi().set('test:data', 'a').hset('test:meta', 'g', '7').exec()
  assert.equal(await views.read('v', STOCK, build), 'view of a')
  await redis.incr('test:gen')
  assert.equal(await views.read('v', STOCK, build), 'view of a')
  assert.equal(build.builds, 1)
  await redis.multi().set('test:data', 'c').hset('test:meta', 'g', '8').exec()
  assert.equal(await views.read('v', STOCK, build), 'view of c')
})

test('no view: undefined and nothing kept; a view without a tag is served but not kept', async () => {
  const views = createTaggedViews(redis)
  const build = dataBuilder()
  assert.equal(await views.read('v', GEN, build), undefined)
  await redis.set('test:data', 'untagged')
  assert.equal(await views.read('v', GEN, build), 'view of untagged')
  assert.equal(await views.read('v', GEN, build), 'view of untagged')
  assert.equal(build.builds, 3, 'each read without a tag builds')
  assert.equal(views.bytes, 0)
})

test('the reads waiting for one stale view share one build, and the tags of a turn are one Redis call', async () => {
  const views = createTaggedViews(redis)
  const build = dataBuilder()
  await redis.multi().set('test:data', 'a').incr('test:gen').exec()
  const tagCalls = countTagCalls()
  const texts = await Promise.all([
    ...Array.from({ length: 20 }, () => views.read('v', GEN, build)),
    views.read('w', STOCK, async () => ({ tag: null, text: 'w' })),
  ])
  assert.deepEqual(new Set(texts), new Set(['view of a', 'w']))
  assert.equal(build.builds, 1)
  assert.equal(tagCalls.calls, 1)
})

test('a tag from before Redis was emptied is never current again (generations from the clock)', async () => {
  // The writer's rule (src/market/lua/history.lua): a missing counter starts from the clock.
  const START_FROM_CLOCK = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.sub('00000' .. t[2], -6))
end
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[1])`
  const write = (data: string) => redis.eval(START_FROM_CLOCK, 2, 'test:gen', 'test:data', data)
  const views = createTaggedViews(redis)
  const build = dataBuilder()
  await write('before')
  assert.equal(await views.read('v', GEN, build), 'view of before')
  await redis.flushdb()
  await write('after')
  assert.equal(await views.read('v', GEN, build), 'view of after')
})

test('memory is bounded by bytes: the least recently served view goes first', async () => {
  const views = createTaggedViews(redis, { maxBytes: 3 * 2 * 100 })
  await redis.set('test:gen', '1')
  const built: string[] = []
  const of = (name: string) => async () => {
    built.push(name)
    return { tag: '1', text: name.repeat(100) }
  }
  await views.read('a', GEN, of('a'))
  await views.read('b', GEN, of('b'))
  await views.read('c', GEN, of('c'))
  assert.equal(views.bytes, 600)
  await views.read('a', GEN, of('a'))
  await views.read('d', GEN, of('d'))
  assert.equal(views.bytes, 600, 'still within the bound')
  await views.read('a', GEN, of('a'))
  await views.read('b', GEN, of('b'))
  assert.deepEqual(built, ['a', 'b', 'c', 'd', 'b'], 'a was served again and stayed; b was the oldest and went')
  const none = createTaggedViews(redis, { maxBytes: 0 })
  await none.read('a', GEN, of('a'))
  await none.read('a', GEN, of('a'))
  assert.equal(none.bytes, 0)
  assert.deepEqual(built.slice(5), ['a', 'a'], 'maxBytes 0 keeps nothing')
})

test('a failed tag read fails the reads of its turn; the next turn reads again', async () => {
  const views = createTaggedViews(redis)
  await redis.set('test:data', 'a')
  await redis.hset('test:gen', 'x', '1') // a hash where a string is expected: GET fails
  await assert.rejects(views.read('v', GEN, dataBuilder()), /WRONGTYPE/)
  await redis.del('test:gen')
  await redis.set('test:gen', '2')
  assert.equal(await views.read('v', GEN, dataBuilder()), 'view of a')
})
