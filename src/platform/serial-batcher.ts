/**
 * Group commit for work that serialises anyway: items submitted while a batch runs wait
 * and run together in the next batch, one batch at a time. Under load a batch carries
 * every item that arrived during the one before, so the fixed cost of a run (a
 * transaction, a lock taken, a commit flushed to disk) is shared; alone, an item runs at
 * once (after the current turn of the event loop, so the turn's other items join it).
 *
 * Why: BTC orders all update one totals row, so their transactions queue on its lock and
 * each commit's disk flush; one transaction per order capped placement at the disk's
 * commit rate (measured with bench/btc.bench.ts).
 */

/** Options of {@link createSerialBatcher}. */
export interface SerialBatcherOptions {
  /** Most items in one batch; the rest wait for the next. @defaultValue 500 */
  maxBatch?: number
}

/** Submits one item; resolves with its result, or rejects with its batch's error. */
export type SerialBatcher<I, O> = (item: I) => Promise<O>

interface Waiting<I, O> {
  item: I
  resolve: (value: O) => void
  reject: (err: unknown) => void
}

/**
 * Creates a batcher over `run`, which gets the items of a batch in the order submitted
 * and must answer one result per item, in that order. A run that throws (or answers the
 * wrong number of results) rejects every item of its batch; the next batch runs anyway.
 */
export function createSerialBatcher<I, O>(run: (items: I[]) => Promise<readonly O[]>, options: SerialBatcherOptions = {}): SerialBatcher<I, O> {
  const maxBatch = options.maxBatch ?? 500
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) throw new RangeError(`maxBatch must be a whole number >= 1 (got ${maxBatch})`)
  let queue: Array<Waiting<I, O>> = []
  let running = false

  const next = async () => {
    while (queue.length > 0) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch)
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch)
      try {
        const results = await run(batch.map((w) => w.item))
        if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} items answered ${results.length} results`)
        batch.forEach((w, i) => w.resolve(results[i] as O))
      } catch (err) {
        for (const w of batch) w.reject(err)
      }
    }
    running = false
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject })
      if (running) return
      running = true
      // After this turn's I/O callbacks: the requests read in the same turn join.
      setImmediate(() => void next())
    })
}
