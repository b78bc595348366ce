/**
 * Runs tasks one at a time per key (a tenant), in arrival order, in this process. ClickHouse has
 * no transactions or row locks: where a read-then-write must not interleave with another (two
 * pulls leasing, two targeting runs checking what exists), the serving process serialises them.
 */
export interface KeyedLock {
  run<T>(key: string | number, task: () => Promise<T>): Promise<T>
  /** Resolves when every task queued so far has settled. */
  idle(): Promise<void>
}

export function createKeyedLock(): KeyedLock {
  const tails = new Map<string | number, Promise<unknown>>()
  return {
    run(key, task) {
      const prev = tails.get(key) ?? Promise.resolve()
      const next = prev.then(task, task)
      const tail = next.catch(() => undefined)
      tails.set(key, tail)
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key)
      })
      return next
    },
    async idle() {
      while (tails.size) await Promise.all([...tails.values()])
    },
  }
}
