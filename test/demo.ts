import { createPii } from '../core/pii.js'
import { generateDemo } from '../demo/demo.generator.js'
import { seedDemoTags } from '../demo/demo.tags.js'
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
