/**
 * Work of one kind issued in the same turn of the event loop, done by one call: the API
 * handles many requests per turn, and one Redis call for all of them costs less client
 * and server CPU than a call each. A turn's work starts after that turn's I/O callbacks
 * (`setImmediate`), so every request read in it joins, and it waits for no timer.
 */

/**
 * Collects the items given in one turn and hands them to `run`, in the order given, once
 * the turn's I/O callbacks are done. Returns the function that adds an item.
 */
export function createTurnBatch<T>(run: (items: T[]) => void): (item: T) => void {
  let items: T[] = []
  return (item) => {
    items.push(item)
    if (items.length > 1) return
    setImmediate(() => {
      const batch = items
      items = []
      run(batch)
    })
  }
}

/** Loads a value per key, batched per turn. */
export type TurnLoader<V> = (key: string) => Promise<V>

/** Options of {@link createTurnLoader}. */
export interface TurnLoaderOptions {
  /**
   * How long a loaded value is answered again without loading, in ms from when its load
   * answered. 0: no value is kept after its turn, every turn reads afresh. A value is kept
   * per key until it is read again after its time: meant for loaders over a few keys.
   * @defaultValue 0
   */
  keepMs?: number
  /** The clock, in ms. @defaultValue Date.now */
  now?: () => number
}

/**
 * Creates a loader over `loadMany`, which must answer one value per key, in order. The
 * keys of a turn are deduplicated; each caller gets the answer for its key, or the error
 * of the call that carried it. A value is kept for `keepMs` (an error never is).
 */
export function createTurnLoader<V>(loadMany: (keys: string[]) => Promise<readonly V[]>, options: TurnLoaderOptions = {}): TurnLoader<V> {
  const keepMs = options.keepMs ?? 0
  const now = options.now ?? Date.now
  if (!Number.isFinite(keepMs) || keepMs < 0) throw new RangeError(`keepMs must be a number of ms >= 0 (got ${keepMs})`)
  const kept = new Map<string, { value: V; until: number }>()
  const add = createTurnBatch<{ key: string; waiter: PromiseWithResolvers<V> }>((items) => {
    const waiters = Map.groupBy(items, (item) => item.key)
    const keys = [...waiters.keys()]
    loadMany(keys)
      .then((values) => {
        if (values.length !== keys.length) throw new Error(`loaded ${values.length} values for ${keys.length} keys`)
        const until = now() + keepMs
        keys.forEach((key, i) => {
          if (keepMs > 0) kept.set(key, { value: values[i]!, until })
          for (const { waiter } of waiters.get(key)!) waiter.resolve(values[i]!)
        })
      })
      .catch((err: unknown) => {
        for (const { waiter } of items) waiter.reject(err)
      })
  })
  return (key) => {
    if (keepMs > 0) {
      const value = kept.get(key)
      if (value !== undefined) {
        if (now() < value.until) return Promise.resolve(value.value)
        kept.delete(key)
      }
    }
    const waiter = Promise.withResolvers<V>()
    add({ key, waiter })
    return waiter.promise
  }
}
