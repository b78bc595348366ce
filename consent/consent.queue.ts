/**
 * Consent writes of a tenant, one at a time: each write reads the stored decision times and then
 * writes, so two requests in this process cannot both think they are newest. The requests that
 * arrive meanwhile are written together by the next write (three statements per batch, not per
 * request), in arrival order.
 *
 * A batch the engine refuses is written again one request at a time, in the same order: the one
 * at fault fails with its own error and the others are stored, instead of every request of the
 * batch failing with it. Writing a request again is safe: history rows collapse on their change
 * digest, and which decision wins is read afresh from the stored times.
 */
export type TenantWrite<I, O> = (tenantId: number, items: readonly I[]) => Promise<O[]>

interface Waiter<I, O> {
  items: readonly I[]
  resolve(out: O[]): void
  reject(e: unknown): void
}

export function createTenantQueue<I, O>(write: TenantWrite<I, O>): TenantWrite<I, O> {
  const waiting = new Map<number, Waiter<I, O>[]>()
  const writing = new Set<number>()

  async function writeAlone(tenantId: number, w: Waiter<I, O>): Promise<void> {
    try {
      w.resolve(await write(tenantId, w.items))
    } catch (e) {
      w.reject(e)
    }
  }

  async function drain(tenantId: number): Promise<void> {
    writing.add(tenantId)
    try {
      for (let q = waiting.get(tenantId); q?.length; q = waiting.get(tenantId)) {
        waiting.delete(tenantId)
        if (q.length === 1) {
          await writeAlone(tenantId, q[0]!)
          continue
        }
        let out: O[]
        try {
          out = await write(tenantId, q.flatMap((w) => w.items))
        } catch {
          for (const w of q) await writeAlone(tenantId, w)
          continue
        }
        let i = 0
        for (const w of q) {
          w.resolve(out.slice(i, i + w.items.length))
          i += w.items.length
        }
      }
    } finally {
      writing.delete(tenantId)
    }
  }

  return (tenantId, items) => {
    if (!items.length) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      const w = { items, resolve, reject }
      const q = waiting.get(tenantId)
      if (q) q.push(w)
      else waiting.set(tenantId, [w])
      if (!writing.has(tenantId)) void drain(tenantId)
    })
  }
}
