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
import { applyDefinitions } from './tag.pack.js'
import { createTagRepository, parseDefinition, type TagRepository } from './tag.repository.js'

/**
 * A tag's purpose change used to be saved and then break whatever used the tag for the purpose
 * it dropped: the layout model failed every build, a segment or a campaign every run. Now the
 * change is refused (409 IN_USE) naming each segment, campaign and catalogue entry in the way.
 * Retiring a tag a saved segment read was accepted too, and every later segments run failed
 * (the layout model then stopped rebuilding); so was a type or values change a segment's
 * condition no longer fits. Both are refused the same way now.
 */

let e: TestEngine
let tenants: TenantService
let bank: Tenant
let repo: TagRepository
let segments: ReturnType<typeof createSegmentsModule>

const loanDue = (purpose: string[]) => testTagDef('loan_due_7d', 'boolean', { kind: 'rule', when: { feature: 'days_to_next_installment', op: 'between', value: [0, 6] } }, {}, purpose)
const elder = (purpose: string[]) => testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, purpose)

const young = () => testTagDef('young', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'lt', value: 30 } }, {}, ['marketing'])
const gold = { when: { feature: 'age', op: 'gte', value: 60 }, value: 'gold' }
const silver = { when: { feature: 'age', op: 'gte', value: 40 }, value: 'silver' }
const tier = (values: string[], cases = [gold, silver], otherwise = 'bronze') => testTagDef('tier', 'enum', { kind: 'rule', cases, else: otherwise }, { values }, ['marketing'])
const flag = (name: string) => testTagDef(name, 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 40 } }, {}, ['marketing'])

async function refusal(def: unknown): Promise<{ code: string; issues: ErrorIssue[]; message: string }> {
  return refused(() => repo.save(bank.id, def, 'test'))
}

async function refused(change: () => Promise<unknown>): Promise<{ code: string; issues: ErrorIssue[]; message: string }> {
  try {
    await change()
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
  segments = createSegmentsModule({ db: e.db, tenants, tags: repo, runner })
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

  await repo.save(bank.id, young(), 'test')
  await repo.save(bank.id, tier(['gold', 'silver', 'bronze']), 'test')
  for (const name of ['vip', 'lapsed', 'spare']) await repo.save(bank.id, flag(name), 'test')
  await repo.save(bank.id, testTagDef('vip_elder', 'boolean', { kind: 'rule', when: { all: [{ tag: 'vip', op: 'eq', value: true }, { feature: 'age', op: 'gte', value: 60 }] } }, {}, ['marketing']), 'test')
  const seg = (id: string, rule: unknown) => segments.repo.save(bank.id, id, { name: id, purpose: 'marketing', rule }, 'test')
  await seg('youngs', { all: [{ tag: 'young', op: 'eq', value: true }] })
  await seg('golds', { tag: 'tier', op: 'in', value: ['gold', 'silver'] })
  await seg('gold-refs', { all: [{ segment: 'golds' }, { tag: 'vip', op: 'exists' }] })
  // Archived segments may be restored: they count as users too.
  await seg('lapsed-archived', { tag: 'lapsed', op: 'eq', value: true })
  await segments.repo.setArchived(bank.id, 'lapsed-archived', true, 'test')
  await campaigns.save(
    bank.id,
    'vip-offer',
    { name: 'Offer', purpose: 'marketing', audience: { rule: { tag: 'vip', op: 'eq', value: true } }, schedule: { kind: 'cron', cron: '0 9 * * *' }, message: { body: { zh: '优惠', en: 'offer' } } },
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

const users = (r: { issues: ErrorIssue[] }) => r.issues.map((i) => `${i.kind} ${i.id} ${i.at}`).sort()

describe('retiring', () => {
  it('refuses retiring a tag a saved segment reads (409 IN_USE), naming the segment and where, and keeps the tag', async () => {
    const r = await refused(() => repo.retire(bank.id, 'young', 'test'))
    expect(r.code).toBe('IN_USE')
    expect(users(r)).toEqual(['segment youngs rule.all.0.tag'])
    expect(r.issues.every((i) => i.field === 'name')).toBe(true)
    expect(r.message).toMatch(/segment youngs \(rule\.all\.0\.tag\)/)
    expect(await repo.get(bank.id, 'young')).toBeDefined()
  })

  it('refuses retiring a tag a campaign, another tag or an archived segment uses, naming each in one refusal', async () => {
    const vip = await refused(() => repo.retire(bank.id, 'vip', 'test'))
    expect(vip.code).toBe('IN_USE')
    expect(users(vip)).toEqual(['campaign vip-offer audience.rule.tag', 'segment gold-refs rule.all.1.tag', 'tag vip_elder rule'])
    const archived = await refused(() => repo.retire(bank.id, 'lapsed', 'test'))
    expect(archived.code).toBe('IN_USE')
    expect(users(archived)).toEqual(['segment lapsed-archived rule.tag'])
  })

  it('retires a tag nothing uses, and one whose last user went', async () => {
    await repo.retire(bank.id, 'spare', 'test')
    expect(await repo.get(bank.id, 'spare')).toBeUndefined()
    await segments.repo.retire(bank.id, 'lapsed-archived', 'test')
    await repo.retire(bank.id, 'lapsed', 'test')
    expect(await repo.get(bank.id, 'lapsed')).toBeUndefined()
  })
})

describe('type and values changes', () => {
  it('refuses a type change a segment’s condition no longer fits, naming the segment and the value at fault', async () => {
    const r = await refusal(testTagDef('young', 'number', { kind: 'rule', from: { feature: 'age' } }, {}, ['marketing']))
    expect(r.code).toBe('IN_USE')
    expect(r.issues).toEqual([expect.objectContaining({ field: 'type', kind: 'segment', id: 'youngs', at: 'rule.all.0.value' })])
    expect(r.message).toMatch(/segment youngs/)
    expect((await repo.get(bank.id, 'young'))!.type).toBe('boolean')
  })

  it('refuses dropping an enum value a segment names, directly or through a reference; allows adding one or dropping one nobody names', async () => {
    const r = await refusal(tier(['gold', 'bronze'], [gold]))
    expect(r.code).toBe('IN_USE')
    expect(users(r)).toEqual(['segment gold-refs rule.all.0.value.1', 'segment golds rule.value.1'])
    expect(r.issues.every((i) => i.field === 'values')).toBe(true)
    expect((await repo.get(bank.id, 'tier'))!.values).toEqual(['gold', 'silver', 'bronze'])
    expect((await repo.save(bank.id, tier(['gold', 'silver', 'bronze', 'platinum'], [gold, silver], 'platinum'), 'test')).tag.version).toBe(2)
    expect((await repo.save(bank.id, tier(['gold', 'silver', 'platinum'], [gold, silver], 'platinum'), 'test')).tag.version).toBe(3)
  })
})

describe('applying many definitions', () => {
  it('saves none of them when one is refused for what uses it, naming it by its place in the list', async () => {
    // The first could be saved alone; the second drops a purpose a saved segment uses the tag for.
    const fresh = parseDefinition(testTagDef('fresh_flag', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 45 } }, {}, ['marketing']))
    const youngForService = parseDefinition(testTagDef('young', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'lt', value: 30 } }, {}, ['service']))
    const err = await refused(() => applyDefinitions(repo, bank.id, [fresh, youngForService], 'test'))
    expect(err.code).toBe('IN_USE')
    expect(err.issues.map((i) => i.field)).toContain('definitions.1.purpose')
    expect(await repo.get(bank.id, 'fresh_flag')).toBeUndefined()
    expect((await repo.get(bank.id, 'young'))!.purpose).toEqual(['marketing'])
  })

  it('raises a tag and the tag that reads it to high together: the set is checked as it will be, not as it is in between', async () => {
    const base = (name: string, when: unknown, sensitivity: string) => parseDefinition(testTagDef(name, 'boolean', { kind: 'rule', when }, { sensitivity }, ['marketing']))
    const reader = (sensitivity: string) => base('watched_elder', { all: [{ tag: 'watched', op: 'eq', value: true }, { feature: 'age', op: 'gte', value: 60 }] }, sensitivity)
    await applyDefinitions(repo, bank.id, [base('watched', { feature: 'age', op: 'gte', value: 50 }, 'low'), reader('low')], 'test')
    const raised = await applyDefinitions(repo, bank.id, [base('watched', { feature: 'age', op: 'gte', value: 50 }, 'high'), reader('high')], 'test')
    expect(raised.map((r) => [r.name, r.changed])).toEqual([['watched', true], ['watched_elder', true]])
    expect((await repo.get(bank.id, 'watched'))!.sensitivity).toBe('high')
    expect((await repo.get(bank.id, 'watched_elder'))!.sensitivity).toBe('high')
  })
})
