import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createOffsetTracker, takeBatch } from '../../../src/platform/kafka/offsets.ts'

const all = new Set([0, 1, 2])
const targets = (tracker: ReturnType<typeof createOffsetTracker>, assigned: ReadonlySet<number> = all) =>
  tracker.commitTargets(assigned).map(({ partition, offset }) => [partition, offset])

describe('offset tracker', () => {
  test('commits up to the lowest unfinished offset, whatever order messages finish in', () => {
    const tracker = createOffsetTracker()
    const taken = [0n, 1n, 2n, 3n].map((offset) => tracker.take(0, offset, offset, 5))
    assert.deepEqual(targets(tracker), [[0, 0n]])
    taken[2]!.finish()
    taken[1]!.finish()
    assert.deepEqual(targets(tracker), [[0, 0n]], 'offset 0 still unfinished')
    taken[0]!.finish()
    assert.deepEqual(targets(tracker), [[0, 3n]])
    taken[3]!.finish()
    taken[3]!.finish()
    const done = tracker.commitTargets(all)
    assert.deepEqual(done, [{ partition: 0, offset: 4n, leaderEpoch: 5 }], 'next to read after the last taken')
    tracker.committed(done)
    assert.deepEqual(targets(tracker), [], 'nothing moved since the commit')
  })

  test('ranges: a batch holds back commits until the whole range is finished', () => {
    const tracker = createOffsetTracker()
    const first = tracker.take(1, 0n, 99n, 0)
    const second = tracker.take(1, 100n, 199n, 0)
    second.finish()
    assert.deepEqual(targets(tracker), [[1, 0n]])
    first.finish()
    assert.deepEqual(targets(tracker), [[1, 200n]])
  })

  test('rebalance: a rewound partition starts over, and its superseded orders still hold back commits until they finish', () => {
    const tracker = createOffsetTracker()
    const old = [10n, 11n, 12n].map((offset) => tracker.take(0, offset, offset, 1))
    old[0]!.finish()
    tracker.committed(tracker.commitTargets(all))
    // The group moved partition 0 away and back: the stream starts again at the committed offset.
    tracker.keepPartitions([1, 2])
    assert.deepEqual(targets(tracker), [], 'a partition not assigned is not committed')
    const again = [11n, 12n, 13n].map((offset) => tracker.take(0, offset, offset, 2))
    for (const taken of again) taken.finish()
    assert.deepEqual(targets(tracker), [[0, 11n]], 'the first copy of 11 is still unfinished')
    assert.equal(tracker.lowestUnfinished(0), 11n)
    old[1]!.finish()
    assert.deepEqual(targets(tracker), [[0, 12n]])
    old[2]!.finish()
    assert.deepEqual(targets(tracker), [[0, 14n]])
    assert.equal(tracker.lowestUnfinished(0), undefined)
  })

  test('an offset at or below one taken means the stream went back: the partition starts over', () => {
    const tracker = createOffsetTracker()
    const before = tracker.take(2, 5n, 5n, 0)
    before.finish()
    tracker.committed(tracker.commitTargets(all))
    assert.deepEqual(targets(tracker), [])
    const rewound = tracker.take(2, 3n, 3n, 0)
    assert.deepEqual(targets(tracker), [[2, 3n]], 'a new tracking has not committed yet')
    rewound.finish()
    assert.deepEqual(targets(tracker), [[2, 4n]])
  })

  test('an unfinished offset below where the partition came back is not committed again: the group already passed it', () => {
    const tracker = createOffsetTracker()
    const stale = tracker.take(0, 10n, 10n, 1)
    tracker.take(0, 11n, 11n, 1).finish()
    // Taken away while 10 is still in flight; another instance finishes 10..50 and commits 51.
    tracker.keepPartitions([1, 2])
    const back = tracker.take(0, 51n, 51n, 2)
    assert.deepEqual(targets(tracker), [[0, 51n]], 'never back to 10')
    back.finish()
    assert.deepEqual(targets(tracker), [[0, 52n]])
    stale.finish()
    assert.deepEqual(targets(tracker), [[0, 52n]])
  })

  test('only assigned partitions are committed', () => {
    const tracker = createOffsetTracker()
    tracker.take(0, 0n, 0n, 0).finish()
    tracker.take(1, 0n, 0n, 0).finish()
    assert.deepEqual(targets(tracker, new Set([1])), [[1, 1n]])
  })

  test('takeBatch takes one range per run of one partition, and a new run where the stream went back', () => {
    const tracker = createOffsetTracker()
    const at = (partition: number, offset: bigint) => ({ partition, offset, leaderEpoch: 0 })
    const batch = [at(0, 0n), at(0, 1n), at(1, 7n), at(0, 2n), at(0, 3n), at(0, 1n), at(0, 2n)]
    const ranges = takeBatch(tracker, batch, (m) => m)
    assert.deepEqual(
      ranges.map((r) => [r.partition, r.first, r.last]),
      [
        [0, 0n, 1n],
        [1, 7n, 7n],
        [0, 2n, 3n],
        [0, 1n, 2n],
      ],
    )
    for (const range of ranges) range.finish()
    assert.deepEqual(targets(tracker), [
      [1, 8n],
      [0, 3n],
    ])
  })
})
