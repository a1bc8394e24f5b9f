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

/**
 * Creates a loader over `loadMany`, which must answer one value per key, in order. The
 * keys of a turn are deduplicated; each caller gets the answer for its key, or the error
 * of the call that carried it. No value is kept after its turn: every turn reads afresh.
 */
export function createTurnLoader<V>(loadMany: (keys: string[]) => Promise<readonly V[]>): TurnLoader<V> {
  const add = createTurnBatch<{ key: string; waiter: PromiseWithResolvers<V> }>((items) => {
    const waiters = Map.groupBy(items, (item) => item.key)
    const keys = [...waiters.keys()]
    loadMany(keys)
      .then((values) => {
        if (values.length !== keys.length) throw new Error(`loaded ${values.length} values for ${keys.length} keys`)
        keys.forEach((key, i) => {
          for (const { waiter } of waiters.get(key)!) waiter.resolve(values[i]!)
        })
      })
      .catch((err: unknown) => {
        for (const { waiter } of items) waiter.reject(err)
      })
  })
  return (key) => {
    const waiter = Promise.withResolvers<V>()
    add({ key, waiter })
    return waiter.promise
  }
}
