import { z } from 'zod'
import type { TenantDb } from '../core/db.js'

/** The track event names a tenant's app sent in the last `days` days, most frequent first. */
export async function recentEventNames(db: TenantDb, o: { days: number; limit: number }): Promise<{ name: string; events: number }[]> {
  // Reads the event name column only, of the window's monthly partitions, in the tenant's key range.
  return db.query(
    `SELECT event AS name, count() AS events FROM events
     WHERE tenant_id = {tenant:UInt16} AND type = 'track' AND event != '' AND timestamp >= now64(3) - toIntervalDay({days:UInt16})
     GROUP BY event ORDER BY events DESC, name LIMIT {limit:UInt32}`,
    { days: o.days, limit: o.limit },
    z.object({ name: z.string(), events: z.coerce.number() }),
  )
}
