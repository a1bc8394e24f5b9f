/** The serial batcher: one batch at a time, items arriving meanwhile run together next (started before the batch before is answered), errors per batch. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createSerialBatcher } from '../../src/platform/serial-batcher.ts'

describe('createSerialBatcher', () => {
  it('runs one batch at a time; what arrives during a batch goes in the next, in order', async () => {
    const batches: number[][] = []
    let inFlight = 0
    let release: () => void = () => {}
    const submit = createSerialBatcher<number, string>(async (items) => {
      inFlight++
      assert.equal(inFlight, 1, 'two batches at once')
      batches.push(items)
      if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve))
      inFlight--
      return items.map((n) => `r${n}`)
    })
    const first = [submit(1), submit(2)]
    await new Promise((resolve) => setImmediate(resolve))
    // The first batch is running: these wait for it.
    const later = [3, 4, 5].map((n) => submit(n))
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(batches, [[1, 2]])
    release()
    assert.deepEqual(await Promise.all([...first, ...later]), ['r1', 'r2', 'r3', 'r4', 'r5'])
    assert.deepEqual(batches, [[1, 2], [3, 4, 5]])
  })

  it('hands the next batch to its run before answering the finished one, so the work that serialises never waits for the answers', async () => {
    const events: string[] = []
    let release: () => void = () => {}
    const submit = createSerialBatcher<number, number>(async (items) => {
      // A driver takes a few hops of the microtask queue before the work leaves the process.
      for (let hop = 0; hop < 5; hop++) await null
      events.push(`sent ${items.join(',')}`)
      if (items[0] === 1) await new Promise<void>((resolve) => (release = resolve))
      return items
    })
    const answered = (p: Promise<number>) => p.then((n) => void events.push(`answered ${n}`))
    const first = answered(submit(1))
    while (!events.includes('sent 1')) await new Promise((resolve) => setImmediate(resolve))
    const later = [answered(submit(2)), answered(submit(3))]
    release()
    await Promise.all([first, ...later])
    assert.deepEqual(events, ['sent 1', 'sent 2,3', 'answered 1', 'answered 2', 'answered 3'])
  })

  it('caps a batch at maxBatch', async () => {
    const sizes: number[] = []
    const submit = createSerialBatcher<number, number>(async (items) => {
      sizes.push(items.length)
      return items
    }, { maxBatch: 4 })
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => submit(i)))
    assert.deepEqual(results, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert.deepEqual(sizes, [4, 4, 2])
    assert.throws(() => createSerialBatcher(async (items) => items, { maxBatch: 0 }), RangeError)
  })

  it("rejects a failed batch's items only, and a wrong number of results is a failure", async () => {
    let calls = 0
    const submit = createSerialBatcher<number, number>(async (items) => {
      calls++
      if (items.includes(13)) throw new Error('unlucky batch')
      if (items.includes(7)) return []
      return items
    })
    await assert.rejects(submit(13), /unlucky batch/)
    await assert.rejects(submit(7), /a batch of 1 items answered 0 results/)
    assert.equal(await submit(1), 1)
    assert.equal(calls, 3)
  })
})
