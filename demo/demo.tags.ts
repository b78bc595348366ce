import type { TagsModule } from '../tags/tags.module.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../tags/tag.pack.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { DEMO_BANKS } from './demo.banks.js'

/**
 * The demo's member banks start with the banking tag pack applied and computed once, and (with
 * `recommend`) the layout model built, so the catalogue, the customer API, segments and layouts
 * have values from the first minute; the scheduler keeps them current from then on.
 */
export async function seedDemoTags(deps: { tenants: TenantService; tags: TagsModule; recommend?: boolean }): Promise<{ tenants: number; tags: number; values: number; seconds: number }> {
  const t0 = performance.now()
  const defs = readDefinitionFiles(BANKING_PACK)
  let values = 0
  for (const bank of DEMO_BANKS) {
    const tenant = await deps.tenants.get(bank.slug)
    await applyDefinitions(deps.tags.repo, tenant.id, defs, 'demo')
    const run = await deps.tags.runner.run({ tenantId: tenant.id, mode: 'full', trigger: 'cli', follow: false })
    if (run.status !== 'succeeded') throw new Error(`The demo tag run for ${bank.slug} ${run.status}: ${run.error}`)
    values += run.rows
    // The layout model follows here rather than in the background, so the first layouts are personal.
    if (deps.recommend) {
      const rec = await deps.tags.runner.run({ tenantId: tenant.id, pipeline: 'recommend', trigger: 'cli' })
      if (rec.status !== 'succeeded') throw new Error(`The demo layout model for ${bank.slug} ${rec.status}: ${rec.error}`)
    }
  }
  return { tenants: DEMO_BANKS.length, tags: defs.length, values, seconds: (performance.now() - t0) / 1000 }
}
