import { chDateTime } from '../core/time.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { LONG_AGO, localEvent, testTagDef } from '../test/fixtures.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/** A login at a local time ('YYYY-MM-DD HH:MM'), received now: the change feed sees it. */
export const loginEvent = (k: number, local: string) => ({ ...localEvent(k, local, 'login'), received_at: chDateTime(new Date()) })

/**
 * The tag tests' small bank: customers `keys` opened long ago (1-5 chose elder mode), each
 * logging in once on 03-12 and customers 1-3 again on 03-13, and `logins_7d` (logins over 7
 * days) defined. The tests add the tags they are about.
 */
export async function openLoginBank(o: { slug: string; timeZone: string; keys: readonly number[] }): Promise<{ engine: TestEngine; repo: TagRepository; tenantId: number }> {
  const engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  const tenantId = (await tenants.create({ slug: o.slug, name: o.slug, timeZone: o.timeZone })).id
  const repo = createTagRepository({ db: engine.db })
  const db = engine.db.forTenant(tenantId)
  await db.insert('customers', o.keys.map((k) => ({ customer_key: k, customer_no: `C${k}`, opened_at: LONG_AGO, updated_at: LONG_AGO, elder_mode: k <= 5 ? 1 : 0 })))
  await db.insert('events', [...o.keys.map((k) => loginEvent(k, '2026-03-12 10:00')), ...[1, 2, 3].map((k) => loginEvent(k, '2026-03-13 10:00'))])
  await repo.save(tenantId, testTagDef('logins_7d', 'number', { kind: 'window', events: ['login'], measure: 'count', days: 7 }), 'test')
  return { engine, repo, tenantId }
}
