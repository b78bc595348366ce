import type { TagsModule } from '../tags/tags.module.js'
import { applyDefinitions, BANKING_PACK, readDefinitionFiles } from '../tags/tag.pack.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { DEMO_BANKS } from './demo.banks.js'

/**
 * The demo's member banks start with the banking tag pack applied and computed once, so the
 * catalogue, the customer API and segments have values from the first minute; the scheduler
 * keeps them current from then on.
 */
export async function seedDemoTags(deps: { tenants: TenantService; tags: TagsModule }): Promise<{ tenants: number; tags: number; values: number; seconds: number }> {
  const t0 = performance.now()
  const defs = readDefinitionFiles(BANKING_PACK)
  let values = 0
  for (const bank of DEMO_BANKS) {
    const tenant = await deps.tenants.get(bank.slug)
    await applyDefinitions(deps.tags.repo, tenant.id, defs, 'demo')
    const run = await deps.tags.runner.run({ tenantId: tenant.id, mode: 'full', trigger: 'cli' })
    if (run.status !== 'succeeded') throw new Error(`The demo tag run for ${bank.slug} ${run.status}: ${run.error}`)
    values += run.rows
  }
  return { tenants: DEMO_BANKS.length, tags: defs.length, values, seconds: (performance.now() - t0) / 1000 }
}
