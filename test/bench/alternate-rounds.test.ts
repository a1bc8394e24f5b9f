/**
 * The benchmarks' alternating rounds: a run counts only if its baseline held still. The
 * rounds here are made up (no server is loaded): each call answers the next req/s of a list.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { alternateRounds, type LoadRound, spreadOf } from '../../bench/lib.ts'

/** A round function answering the given req/s in turn, counting its calls. */
function rounds(rates: number[]) {
  let calls = 0
  const next = async (): Promise<LoadRound> => {
    const rate = rates[calls++]
    if (rate === undefined) throw new Error('more rounds than planned')
    return { requestsPerSecond: rate, p50Ms: 1, p99Ms: 2, requests: rate, serverCpuUsPerRequest: 10 }
  }
  return { next, calls: () => calls }
}

const options = { rounds: 3, seconds: 1, warmupSeconds: 1, maxSpread: 0.1 }

test('the spread is (max - min) / median of the req/s, 0 for one round', () => {
  assert.equal(spreadOf([{ requestsPerSecond: 100 }]), 0)
  assert.equal(spreadOf([{ requestsPerSecond: 90 }, { requestsPerSecond: 100 }, { requestsPerSecond: 110 }]), 0.2)
})

test('a steady baseline: the rounds as run, none repeated, valid', async () => {
  const baseline = rounds([1000, 100, 102, 101])
  const subject = rounds([500, 50, 51, 52])
  const seen: number[] = []
  const run = await alternateRounds(baseline.next, subject.next, options, (round) => seen.push(round))
  assert.deepEqual(run.baselineRounds.map((r) => r.requestsPerSecond), [100, 102, 101])
  assert.deepEqual(run.subjectRounds.map((r) => r.requestsPerSecond), [50, 51, 52])
  assert.deepEqual(seen, [1, 2, 3])
  assert.deepEqual(run.discarded, [])
  assert.deepEqual(run.validity, { spread: 2 / 101, bound: 0.1, repeated: 0, valid: true })
})

test('a first round off the others is set aside with its pair and run again', async () => {
  // Round 2 takes the spread past 10%: of 80 and 100, the one farther from the median (100) goes.
  const baseline = rounds([1000, 80, 100, 101, 99])
  const subject = rounds([500, 40, 50, 51, 49])
  const run = await alternateRounds(baseline.next, subject.next, options, () => {})
  assert.deepEqual(run.baselineRounds.map((r) => r.requestsPerSecond), [100, 101, 99])
  assert.deepEqual(run.subjectRounds.map((r) => r.requestsPerSecond), [50, 51, 49])
  assert.deepEqual(run.discarded.map((d) => [d.baseline.requestsPerSecond, d.subject.requestsPerSecond]), [[80, 40]])
  assert.equal(run.validity.repeated, 1)
  assert.equal(run.validity.valid, true)
})

test('a baseline that never holds still: at most as many repeats as rounds, then NOT valid', async () => {
  const baseline = rounds([1000, 100, 130, 70, 160, 40, 190])
  const subject = rounds([500, 1, 2, 3, 4, 5, 6])
  const run = await alternateRounds(baseline.next, subject.next, options, () => {})
  assert.equal(baseline.calls(), 7, 'the warm-up, three rounds and three repeats')
  assert.equal(run.baselineRounds.length, 3)
  assert.equal(run.discarded.length, 3)
  assert.equal(run.validity.repeated, 3)
  assert.equal(run.validity.valid, false)
  assert.ok(run.validity.spread > 0.1)
  // Every pair stays a pair: each kept baseline round with the subject round run after it.
  const pairs = new Map([[100, 1], [130, 2], [70, 3], [160, 4], [40, 5], [190, 6]])
  for (const [i, b] of run.baselineRounds.entries()) assert.equal(run.subjectRounds[i]!.requestsPerSecond, pairs.get(b.requestsPerSecond))
})
