import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError, issuesFromZod } from '../core/errors.js'
import { chDateTime } from '../core/time.js'

/**
 * Each bank's browser origins: the web pages whose browsers may send events with the bank's write
 * key (the H5 pages inside the app, the bank's site). The key stays the only credential; the list
 * only decides which pages a browser lets read the answers, and which the ingest routes serve at
 * all (see cors.hooks.ts).
 */

/** Plain http is accepted for a developer's own machine only: anywhere else a page can be altered in transit. */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]'])
export const MAX_CORS_ORIGINS = 50

/**
 * One origin exactly as a browser sends it in `Origin`: scheme, host and port, nothing else. A
 * wildcard is refused: it would let any site's pages send with the key and read the answers.
 */
export const corsOrigin = z
  .string()
  .max(300)
  .superRefine((s, ctx) => {
    if (s.includes('*')) {
      ctx.addIssue({ code: 'custom', message: 'wildcards are refused: list each origin (https://h5.bank.cn)' })
      return
    }
    let u: URL
    try {
      u = new URL(s)
    } catch {
      ctx.addIssue({ code: 'custom', message: 'expected an origin such as https://h5.bank.cn' })
      return
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) {
      ctx.addIssue({ code: 'custom', message: 'expected https:// (http:// only for localhost and 127.0.0.1)' })
    } else if (u.origin !== s) {
      ctx.addIssue({ code: 'custom', message: `expected exactly ${u.origin}: scheme, lower-case host and port only (no path or trailing /, no default port)` })
    }
  })

export const corsInput = z.strictObject({
  origins: z.array(corsOrigin).max(MAX_CORS_ORIGINS).describe('exact origins whose pages may send events; [] refuses every browser'),
})
export type CorsInput = z.infer<typeof corsInput>

export const corsView = z.object({
  origins: z.array(z.string()),
  updatedAt: z.string().nullable(),
  updatedBy: z.string(),
})
export type CorsView = z.infer<typeof corsView>

export interface CorsOrigins {
  /** The bank's origins; none until an administrator lists some. */
  get(tenantId: number): Promise<CorsView>
  /** Replaces the list; 400 naming the entry for anything that is not an exact origin. */
  save(tenantId: number, input: unknown, holder: string): Promise<CorsView>
  allows(tenantId: number, origin: string): Promise<boolean>
}

const row = z.object({ origins: z.array(z.string()), updated_at: z.string(), updated_by: z.string() })

/**
 * Looked up on every browser request, so held in memory per tenant. Another process serving the
 * same ClickHouse server sees a change within `freshMs`; this one at once.
 */
export function createCorsOrigins(deps: { db: Db; freshMs?: number; now?: () => Date }): CorsOrigins {
  // A registry table beside tenant_privacy, not a tenant table of the query layer.
  const system = deps.db.system
  const freshMs = deps.freshMs ?? 30_000
  const now = deps.now ?? (() => new Date())
  const cache = new Map<number, { at: number; view: Promise<CorsView>; set: Promise<ReadonlySet<string>> }>()

  async function load(tenantId: number): Promise<CorsView> {
    const [r] = await system.query(
      `SELECT origins, toString(updated_at) AS updated_at, updated_by FROM tenant_cors_origins FINAL WHERE tenant_id = {t:UInt16}`,
      { t: tenantId },
      row,
    )
    return r ? { origins: r.origins, updatedAt: r.updated_at, updatedBy: r.updated_by } : { origins: [], updatedAt: null, updatedBy: '' }
  }

  function entry(tenantId: number) {
    const hit = cache.get(tenantId)
    if (hit && Date.now() - hit.at < freshMs) return hit
    const view = load(tenantId)
    const e = { at: Date.now(), view, set: view.then((v) => new Set(v.origins)) }
    // A failed lookup is not kept: the next request asks again.
    view.catch(() => cache.delete(tenantId))
    cache.set(tenantId, e)
    return e
  }

  return {
    get: (tenantId) => entry(tenantId).view,
    async save(tenantId, raw, holder) {
      const parsed = corsInput.safeParse(raw)
      if (!parsed.success) throw new AppError('VALIDATION_FAILED', 'The browser origins are invalid.', { issues: issuesFromZod(parsed.error.issues) })
      const origins = [...new Set(parsed.data.origins)]
      await system.insert('tenant_cors_origins', [{ tenant_id: tenantId, origins, updated_at: chDateTime(now()), updated_by: holder }])
      cache.delete(tenantId)
      return entry(tenantId).view
    },
    async allows(tenantId, origin) {
      return (await entry(tenantId).set).has(origin)
    },
  }
}
