/**
 * Which offsets a consumer may commit, per partition: never past a message that is not
 * finished, across rebalances.
 *
 * Messages are taken as ranges (one message, or the messages of a partition in one batch)
 * and finished in any order. The commit of a partition is its lowest unfinished offset, or
 * the one after the last taken when none is unfinished. When the stream goes back (an
 * offset at or below one already taken: a rebalance moved it to the committed offset) or
 * the partition is taken away, the partition's tracking starts over; the superseded one is
 * kept while any of its ranges is unfinished, and holds back commits of that partition
 * until they finish (the partition may come back to this instance before they do).
 */
import type { Logger } from '../logger.ts'
import type { StringConsumer } from './clients.ts'

/** What one partition has in flight, as taken from the stream. */
interface PartitionProgress {
  partition: number
  /** First offsets of the ranges taken and not finished, in the order taken (so the first is the lowest); value = leader epoch. */
  inFlight: Map<bigint, number>
  /** First offset this tracking took: where the stream (re)started, the group's committed offset or past it. */
  firstTaken: bigint
  /** Highest offset taken, and its leader epoch. */
  lastTaken: bigint
  lastEpoch: number
  /** Offset last committed (Kafka's next to read). */
  committed: bigint | undefined
}

/** An offset to commit: Kafka's next to read in `partition`. */
export interface CommitTarget {
  /** The partition. */
  partition: number
  /** The next offset to read. */
  offset: bigint
  /** Leader epoch of the message this offset was taken from. */
  leaderEpoch: number
}

/** A range of offsets taken from a partition; {@link TakenOffsets.finish} it once its messages are done. */
export interface TakenOffsets {
  /** The partition. */
  readonly partition: number
  /** First offset of the range. */
  readonly first: bigint
  /** Last offset of the range (the same as `first` for one message). */
  readonly last: bigint
  /** Marks the range finished: commits may pass it. Calling it again does nothing. */
  finish(): void
}

/** Tracks the unfinished offsets of every partition; see the module comment. */
export interface OffsetTracker {
  /**
   * Takes offsets `first` to `last` of `partition` as in flight (`leaderEpoch` of `last`).
   * Ranges of one partition must be taken in offset order; one starting at or below an
   * offset already taken means the stream went back, and starts the partition over.
   */
  take(partition: number, first: bigint, last: bigint, leaderEpoch: number): TakenOffsets
  /** Keeps only `partitions` (the assignment after a rebalance); the others start over when they come back. */
  keepPartitions(partitions: Iterable<number>): void
  /**
   * What to commit now for the partitions in `assigned`: for each whose target moved past
   * its last commit, the lowest unfinished offset (of its current and superseded
   * tracking), or the one after the last taken.
   */
  commitTargets(assigned: ReadonlySet<number>): CommitTarget[]
  /** Records `targets` as committed. */
  committed(targets: readonly CommitTarget[]): void
  /** The lowest unfinished offset of `partition`, superseded tracking included; undefined when none. */
  lowestUnfinished(partition: number): bigint | undefined
}

const firstKey = (progress: PartitionProgress): bigint | undefined => {
  const first = progress.inFlight.keys().next()
  return first.done ? undefined : first.value
}

/** Creates an {@link OffsetTracker}. */
export function createOffsetTracker(): OffsetTracker {
  const current = new Map<number, PartitionProgress>()
  /** Superseded progress with ranges still unfinished. */
  const detached = new Set<PartitionProgress>()
  const detach = (progress: PartitionProgress) => {
    if (current.get(progress.partition) === progress) current.delete(progress.partition)
    if (progress.inFlight.size > 0) detached.add(progress)
  }
  const lowestUnfinished = (partition: number) => {
    const progress = current.get(partition)
    let lowest = progress && firstKey(progress)
    for (const old of detached) {
      if (old.partition !== partition) continue
      const first = firstKey(old)
      if (first !== undefined && (lowest === undefined || first < lowest)) lowest = first
    }
    return lowest
  }
  class Taken implements TakenOffsets {
    readonly #progress: PartitionProgress
    readonly partition: number
    readonly first: bigint
    readonly last: bigint
    constructor(progress: PartitionProgress, first: bigint, last: bigint) {
      this.#progress = progress
      this.partition = progress.partition
      this.first = first
      this.last = last
    }
    finish() {
      this.#progress.inFlight.delete(this.first)
      if (this.#progress.inFlight.size === 0) detached.delete(this.#progress)
    }
  }
  return {
    take(partition, first, last, leaderEpoch) {
      let progress = current.get(partition)
      if (progress && first <= progress.lastTaken) {
        detach(progress)
        progress = undefined
      }
      if (!progress) {
        progress = { partition, inFlight: new Map(), firstTaken: first, lastTaken: last, lastEpoch: leaderEpoch, committed: undefined }
        current.set(partition, progress)
      }
      progress.inFlight.set(first, leaderEpoch)
      progress.lastTaken = last
      progress.lastEpoch = leaderEpoch
      return new Taken(progress, first, last)
    },
    keepPartitions(partitions) {
      const kept = new Set(partitions)
      for (const progress of [...current.values()]) {
        if (!kept.has(progress.partition)) detach(progress)
      }
    },
    commitTargets(assigned) {
      const targets: CommitTarget[] = []
      for (const progress of current.values()) {
        if (!assigned.has(progress.partition)) continue
        const first = progress.inFlight.entries().next()
        const target: CommitTarget = first.done
          ? { partition: progress.partition, offset: progress.lastTaken + 1n, leaderEpoch: progress.lastEpoch }
          : { partition: progress.partition, offset: first.value[0], leaderEpoch: first.value[1] }
        for (const old of detached) {
          const lowest = old.partition === progress.partition ? firstKey(old) : undefined
          // Below where this tracking started, the group's offset already passed it: another
          // instance finished it (and committing it would move the group's offset back).
          if (lowest !== undefined && lowest >= progress.firstTaken && lowest < target.offset) target.offset = lowest
        }
        if (progress.committed === undefined || target.offset > progress.committed) targets.push(target)
      }
      return targets
    },
    committed(targets) {
      for (const { partition, offset } of targets) {
        const progress = current.get(partition)
        if (progress && (progress.committed === undefined || offset > progress.committed)) progress.committed = offset
      }
    },
    lowestUnfinished,
  }
}

/** Where a message is: what {@link takeBatch} needs of it. */
export interface MessagePosition {
  /** The message's partition. */
  partition: number
  /** The message's offset. */
  offset: bigint
  /** The leader epoch the message was fetched in. */
  leaderEpoch: number
}

/**
 * Takes the offsets of a batch as in flight: one range per run of messages of one
 * partition in offset order (a run ends where the partition changes or the stream went
 * back). `positionOf` finds an item's message.
 */
export function takeBatch<T>(tracker: OffsetTracker, batch: readonly T[], positionOf: (item: T) => MessagePosition): TakenOffsets[] {
  const taken: TakenOffsets[] = []
  let first: bigint | undefined
  for (let i = 0; i < batch.length; i++) {
    const message = positionOf(batch[i]!)
    first ??= message.offset
    const next = i + 1 < batch.length ? positionOf(batch[i + 1]!) : undefined
    if (next === undefined || next.partition !== message.partition || next.offset <= message.offset) {
      taken.push(tracker.take(message.partition, first, message.offset, message.leaderEpoch))
      first = undefined
    }
  }
  return taken
}

/** Dependencies of {@link createOffsetCommitter}. */
export interface OffsetCommitterDeps {
  /** The group consumer whose offsets are committed. */
  consumer: StringConsumer
  /** What is finished. */
  tracker: OffsetTracker
  /** Where failed commits are told. */
  log: Logger
}

/** Options of {@link createOffsetCommitter}. */
export interface OffsetCommitterOptions {
  /** The topic whose offsets are committed. */
  topic: string
}

/** Commits a tracker's offsets of one topic. */
export interface OffsetCommitter {
  /**
   * Commits, for the partitions this instance owns now, how far every message is
   * finished. One commit at a time (two in flight could land out of order and move an
   * offset back): a call during one runs after it (calls meanwhile share that next one).
   * Resolves true when offsets were sent;
   * a failure is logged and leaves them for the next call.
   */
  commit(): Promise<boolean>
  /** Stops following the group's assignments. */
  close(): void
}

/**
 * Creates a committer; from now until `close()` it follows the group's assignments, so a
 * partition taken away is no longer committed by this instance.
 */
export function createOffsetCommitter(deps: OffsetCommitterDeps, options: OffsetCommitterOptions): OffsetCommitter {
  const { consumer, tracker, log } = deps
  const { topic } = options
  const assignedPartitions = (assignments: ReadonlyArray<{ topic: string; partitions: number[] }> | null | undefined) =>
    assignments?.find((a) => a.topic === topic)?.partitions ?? []
  const onJoin = (payload: { assignments?: Array<{ topic: string; partitions: number[] }> }) => {
    tracker.keepPartitions(assignedPartitions(payload.assignments))
  }
  consumer.on('consumer:group:join', onJoin)
  const commitNow = async (): Promise<boolean> => {
    try {
      // Mid-rebalance a commit fails and makes the client rejoin; wait for the group.
      if (!consumer.isActive()) return false
      const targets = tracker.commitTargets(new Set(assignedPartitions(consumer.assignments)))
      if (targets.length === 0) return false
      await consumer.commit({ offsets: targets.map(({ partition, offset, leaderEpoch }) => ({ topic, partition, offset, leaderEpoch })) })
      tracker.committed(targets)
      return true
    } catch (err) {
      // The offsets stay where they were; the next call commits them.
      log.warn({ err, topic }, 'committing offsets failed')
      return false
    }
  }
  let committing: Promise<boolean> | undefined
  /** The commit to run after the current one: what finished meanwhile is committed too. */
  let queued: Promise<boolean> | undefined
  const commit = (): Promise<boolean> => {
    if (!committing) {
      committing = commitNow().finally(() => {
        committing = undefined
      })
      return committing
    }
    queued ??= committing.then(() => {
      queued = undefined
      return commit()
    })
    return queued
  }
  return {
    commit,
    close() {
      consumer.off('consumer:group:join', onJoin)
    },
  }
}
