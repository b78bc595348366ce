import { z } from 'zod'
import type { TenantDb } from '../core/db.js'

const countsRow = z.object({ customers: z.coerce.number(), active: z.coerce.number(), events: z.coerce.number() })

/**
 * A member bank's aggregate counts for its group: customers on file (erased and deleted ones left
 * out), customers with an app event in the last 30 days, and those events. Read through the
 * member's own tenant layer, so the structural tenant check applies as to any other query.
 */
export async function memberFigures(db: TenantDb): Promise<z.infer<typeof countsRow>> {
  const [c] = await db.query(
    `SELECT
       (SELECT count() FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS customers,
       (SELECT uniqExact(customer_key) FROM events WHERE tenant_id = {tenant:UInt16} AND customer_key > 0
          AND timestamp >= now64(3) - INTERVAL 30 DAY) AS active,
       (SELECT count() FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp >= now64(3) - INTERVAL 30 DAY) AS events`,
    {},
    countsRow,
  )
  return c!
}
