import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isAppError, type ErrorIssue } from '../core/errors.js'
import { createMetrics } from '../core/metrics.js'
import { createPipelineRunner } from '../pipelines/pipeline.runner.js'
import { campaignTagUses } from '../push/campaign.check.js'
import { createCampaignRepository } from '../push/campaign.repository.js'
import { createCatalogRepository } from '../recommend/catalog.repository.js'
import { createSegmentsModule } from '../segments/segments.module.js'
import { createTenantService, type Tenant, type TenantService } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { testTagDef } from '../test/fixtures.js'
import { createTagRepository, type TagRepository } from './tag.repository.js'

/**
 * A tag's purpose change used to be saved and then break whatever used the tag for the purpose
 * it dropped: the layout model failed every build, a segment or a campaign every run. Now the
 * change is refused (409 IN_USE) naming each segment, campaign and catalogue entry in the way.
 */

let e: TestEngine
let tenants: TenantService
let bank: Tenant
let repo: TagRepository

const loanDue = (purpose: string[]) => testTagDef('loan_due_7d', 'boolean', { kind: 'rule', when: { feature: 'days_to_next_installment', op: 'between', value: [0, 6] } }, {}, purpose)
const elder = (purpose: string[]) => testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, purpose)

async function refusal(def: unknown): Promise<{ code: string; issues: ErrorIssue[]; message: string }> {
  try {
    await repo.save(bank.id, def, 'test')
  } catch (err) {
    if (!isAppError(err)) throw err
    return { code: err.code, issues: [...(err.issues ?? [])], message: err.message }
  }
  throw new Error('saved')
}

beforeAll(async () => {
  e = await openTestEngine()
  tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  bank = await tenants.create({ slug: 'uses-bank', name: 'Uses bank' })
  repo = createTagRepository({ db: e.db })
  // The capabilities register where they use tags, as the server wires them.
  const runner = createPipelineRunner({ db: e.db, tenants, log: e.log, metrics: createMetrics({ collectDefault: false }), options: { retries: 0, retryBaseMs: 10, leaseMs: 60_000 } })
  const segments = createSegmentsModule({ db: e.db, tenants, tags: repo, runner })
  createCatalogRepository({ db: e.db, tags: repo, tenants })
  const campaigns = createCampaignRepository({ db: e.db })
  repo.registerUses(campaignTagUses(campaigns))

  await repo.save(bank.id, loanDue(['service', 'marketing']), 'test')
  await repo.save(bank.id, elder(['service', 'marketing', 'security']), 'test')
  await segments.repo.save(bank.id, 'elders', { name: 'Elders', purpose: 'marketing', rule: { all: [{ tag: 'elder', op: 'eq', value: true }] } }, 'test')
  await campaigns.save(
    bank.id,
    'elder-tips',
    { name: 'Tips', purpose: 'security', audience: { rule: { not: { tag: 'elder', op: 'ne', value: true } } }, schedule: { kind: 'cron', cron: '0 9 * * *' }, message: { body: { zh: '提示', en: 'tip' } } },
    'test',
  )
}, 60_000)

afterAll(async () => {
  await e?.close()
})

describe('purpose changes', () => {
  it('refuses dropping a purpose the built-in catalogue uses the tag for, naming the entry', async () => {
    const r = await refusal(loanDue(['marketing']))
    expect(r.code).toBe('IN_USE')
    expect(r.issues).toEqual([expect.objectContaining({ field: 'purpose', kind: 'catalogue', id: 'reminder.loan_due', at: 'items.reminder.loan_due.when.tag' })])
    expect((await repo.get(bank.id, 'loan_due_7d'))!.purpose).toEqual(['service', 'marketing'])
  })

  it('refuses dropping purposes a segment and a campaign use, naming both; allows a change nothing uses', async () => {
    const r = await refusal(elder(['service']))
    expect(r.code).toBe('IN_USE')
    expect(r.issues.map((i) => `${i.kind} ${i.id} ${i.at}`).sort()).toEqual(['campaign elder-tips audience.rule.not.tag', 'segment elders rule.all.0.tag'])
    expect(r.message).toMatch(/segment elders .*marketing/)
    // Adding a purpose, or keeping every purpose in use, is fine.
    expect((await repo.save(bank.id, elder(['service', 'marketing', 'security', 'risk']), 'test')).tag.version).toBe(2)
    expect((await repo.save(bank.id, elder(['service', 'marketing', 'security']), 'test')).tag.version).toBe(3)
    // The built-in catalogue's pension and family zones use it for service.
    const zones = await refusal(elder(['marketing', 'security']))
    expect(zones.issues.map((i) => i.id).sort()).toEqual(['family_zone', 'pension_zone'])
  })
})
