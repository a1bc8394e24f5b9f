/**
 * Group commit for work that serialises anyway: items submitted while a batch runs wait
 * and run together in the next batch, one batch at a time. Under load a batch carries
 * every item that arrived during the one before, so the fixed cost of a run (a
 * transaction, a lock taken, a commit flushed to disk) is shared; alone, an item runs at
 * once (after the current turn of the event loop, so the turn's other items join it).
 * Under load the next batch is handed to `run` before the finished one is answered (its
 * answers wait for the end of the turn): answering writes a response per item, and the
 * database would otherwise wait for all of them before it saw the next batch.
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

  /**
   * Takes the next batch off the queue and starts its run (at once: a run that throws is a
   * rejection). Resolves, never rejects, to the function that answers the batch's items.
   */
  const start = (): Promise<() => void> => {
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch)
    queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch)
    return (async () => run(batch.map((w) => w.item)))()
      .then((results) => {
        if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} items answered ${results.length} results`)
        return () => batch.forEach((w, i) => w.resolve(results[i] as O))
      })
      .catch((err: unknown) => () => {
        for (const w of batch) w.reject(err)
      })
  }

  const next = async () => {
    let current = start()
    /** The answer of the batch before, due after its turn (at the latest before this batch's). */
    let answerBefore: (() => void) | undefined
    for (;;) {
      const answer = await current
      answerBefore?.()
      if (queue.length === 0) {
        answer()
        break
      }
      // The next batch goes to work first, and the finished one is answered after this
      // turn: answering resolves every item's caller (a response to write each), and the
      // next run would otherwise start only once they are all done, the database idle meanwhile.
      current = start()
      let answered = false
      answerBefore = () => {
        if (answered) return
        answered = true
        answer()
      }
      setImmediate(answerBefore)
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
