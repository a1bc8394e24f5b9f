import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { createTurnLoader } from '../../src/platform/turn-loader.ts'

test('the keys of one turn are loaded by one call, deduplicated, and each caller gets its own value', async () => {
  const calls: string[][] = []
  const load = createTurnLoader(async (keys) => {
    calls.push(keys)
    return keys.map((key) => `value of ${key}`)
  })
  const values = await Promise.all([load('a'), load('b'), load('a'), load('c')])
  assert.deepEqual(values, ['value of a', 'value of b', 'value of a', 'value of c'])
  assert.deepEqual(calls, [['a', 'b', 'c']])
})

test('a later turn is loaded afresh, by a call of its own', async () => {
  let version = 0
  const calls: string[][] = []
  const load = createTurnLoader(async (keys) => {
    calls.push(keys)
    version++
    return keys.map(() => version)
  })
  assert.equal(await load('a'), 1)
  await nextTurn()
  assert.equal(await load('a'), 2)
  assert.deepEqual(calls, [['a'], ['a']])
})

test('a failed call fails every caller of its turn, and the next turn is unaffected', async () => {
  let fail = true
  const load = createTurnLoader(async (keys) => {
    if (fail) throw new Error('redis is down')
    return keys
  })
  const results = await Promise.allSettled([load('a'), load('b')])
  assert.deepEqual(
    results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : r.value)),
    ['redis is down', 'redis is down'],
  )
  fail = false
  assert.equal(await load('c'), 'c')
})

test('a load answering the wrong number of values fails its callers instead of mixing answers up', async () => {
  const load = createTurnLoader(async () => ['only one'])
  const results = await Promise.allSettled([load('a'), load('b')])
  for (const r of results) {
    assert.equal(r.status, 'rejected')
    assert.match(String((r as PromiseRejectedResult).reason), /loaded 1 values for 2 keys/)
  }
})

test('keepMs: a value answers the turns of the next keepMs without a load, then is read again; an error is never kept', async () => {
  const calls: string[][] = []
  let fail = true
  let clock = 1_000
  const load = createTurnLoader(
    async (keys) => {
      calls.push(keys)
      if (fail) throw new Error('redis is down')
      return keys.map((key) => `${key}@${calls.length}`)
    },
    { keepMs: 80, now: () => clock },
  )
  await assert.rejects(load('q'), /redis is down/)
  fail = false
  assert.equal(await load('q'), 'q@2')
  await nextTurn()
  assert.deepEqual(await Promise.all([load('q'), load('q')]), ['q@2', 'q@2'])
  assert.equal(calls.length, 2)
  clock += 79
  assert.equal(await load('q'), 'q@2')
  clock += 1
  assert.equal(await load('q'), 'q@3')
  assert.throws(() => createTurnLoader(async (keys) => keys, { keepMs: -1 }), RangeError)
})
