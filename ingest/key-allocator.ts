import crypto from 'node:crypto'
import { z } from 'zod'
import type { SystemDb } from '../core/db.js'
import { AppError } from '../core/errors.js'

/**
 * Hands out dense customer keys (1, 2, 3 ...) per tenant. Several writers may run at once (ingest
 * workers, an import beside live ingest), so each writer first claims a block of keys in
 * `key_blocks` and only then hands keys from it out: a key is persisted as claimed before use.
 *
 * A claim is an insert stamped with the server's `now64(9)`; the earliest claim of a block wins.
 * After inserting, the writer reads the block's claims back; if an earlier claim exists it
 * lost, and claims the next block. A later claimant always sees the earlier one, so two writers
 * never both win a block. (On a replicated cluster, claims must go to one replica for this to
 * hold; see README.)
 */

export interface KeyAllocator {
  /** `n` fresh keys for the tenant, in increasing order. */
  allocate(tenantId: number, n: number): Promise<number[]>
}

const claimRow = z.object({ owner: z.string() })
const maxRow = z.object({ next: z.coerce.number() })

export function createKeyAllocator(deps: { system: SystemDb; blockSize?: number; owner?: string }): KeyAllocator {
  const { system } = deps
  const blockSize = deps.blockSize ?? 1024
  const owner = deps.owner ?? crypto.randomUUID()
  const blocks = new Map<number, { next: number; end: number }>()
  // One claim at a time per process: concurrent callers wait for the same claim.
  let queue: Promise<unknown> = Promise.resolve()

  async function claimBlock(tenantId: number): Promise<{ next: number; end: number }> {
    for (let attempt = 0; attempt < 50; attempt++) {
      // Keys already used by rows that did not come through an allocator (older data, demo
      // generation) must not be handed out again, so the start is past both.
      const [m] = await system.query(
        `SELECT greatest(
            (SELECT max(block_start + block_size) FROM key_blocks WHERE tenant_id = {t:UInt16}),
            (SELECT max(customer_key) + 1 FROM identities WHERE tenant_id = {t:UInt16}),
            (SELECT max(customer_key) + 1 FROM customers WHERE tenant_id = {t:UInt16}),
            1) AS next`,
        { t: tenantId },
        maxRow,
      )
      const start = m!.next
      if (start + blockSize > 2 ** 32) throw new AppError('CONFLICT', `Tenant ${tenantId} has no customer keys left.`)
      await system.command(
        `INSERT INTO key_blocks (tenant_id, block_start, block_size, owner) VALUES ({t:UInt16}, {s:UInt32}, {n:UInt32}, {o:String})`,
        { t: tenantId, s: start, n: blockSize, o: owner },
      )
      const claims = await system.query(
        `SELECT owner FROM key_blocks WHERE tenant_id = {t:UInt16} AND block_start < {e:UInt32} AND block_start + block_size > {s:UInt32}
         ORDER BY claimed_at, owner LIMIT 1`,
        { t: tenantId, s: start, e: start + blockSize },
        claimRow,
      )
      if (claims[0]?.owner === owner) return { next: start, end: start + blockSize }
    }
    throw new AppError('CONFLICT', 'Could not claim a block of customer keys after 50 attempts.')
  }

  return {
    allocate(tenantId, n) {
      const run = queue.then(async () => {
        const out: number[] = []
        while (out.length < n) {
          let b = blocks.get(tenantId)
          if (!b || b.next >= b.end) {
            b = await claimBlock(tenantId)
            blocks.set(tenantId, b)
          }
          const take = Math.min(n - out.length, b.end - b.next)
          for (let i = 0; i < take; i++) out.push(b.next + i)
          b.next += take
        }
        return out
      })
      queue = run.catch(() => undefined)
      return run
    },
  }
}
