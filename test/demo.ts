import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import { generateDemo } from '../demo/demo.generator.js'
import { seedDemoTags } from '../demo/demo.tags.js'
import { createLayoutService, type LayoutService } from '../recommend/layout.service.js'
import { createBitmapStore } from '../segments/bitmap.store.js'
import { loadRoaring } from '../segments/roaring.js'
import type { Tenant } from '../tenants/tenants.service.js'
import type { TestApp } from './app.js'

/**
 * The demo group seeded into a test app (its customers, accounts, events and the banking tag
 * pack), as the layout tests need it; `now` by default the real time, so the tenants' local days
 * are today. Returns the first member bank, the one the tests serve.
 */
export async function seedDemoBank(t: TestApp, o: { customers: number; days: number; seed: number; now?: Date }): Promise<Tenant> {
  await generateDemo(
    { db: t.engine.db, tenants: t.tenants, keys: t.keys, pii: createPii('test-secret-test-secret-test-secret'), log: t.engine.log },
    { customers: o.customers, days: o.days, seed: o.seed, now: o.now ?? new Date(), progress: false },
  )
  await seedDemoTags({ tenants: t.tenants, tags: t.tags })
  return t.tenants.get('demo-qingshan')
}

/** A catalogue item of the quick services module, boosted so it shows, for tests of what shows. */
export const serviceItem = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  module: 'quick_services',
  type: 'service',
  title: { zh: id, en: id },
  deeplink: `app://${id}`,
  category: id,
  boost: 100,
  ...extra,
})

/**
 * A second layout service on the test app's engine: another serving process, with its own
 * snapshots, exposure counts and bitmap store. `flushMs` as the service takes it.
 */
export async function anotherServingProcess(t: TestApp, o: { flushMs?: number } = {}): Promise<LayoutService> {
  const roaring = (await loadRoaring())!
  return createLayoutService({
    db: t.engine.db,
    tenants: t.tenants,
    tags: t.tags.repo,
    catalogs: t.recommend.catalogs,
    bitmaps: createBitmapStore({ roaring, maxBytes: 64 * 1024 ** 2, freshMs: 0 }),
    log: t.engine.log,
    metrics: createMetrics({ collectDefault: false }),
    ...(o.flushMs !== undefined ? { flushMs: o.flushMs } : {}),
  })
}
