import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { isAppError, type ErrorIssue } from '../core/errors.js'
import { createTenantService, type Tenant } from '../tenants/tenants.service.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { testTagDef } from '../test/fixtures.js'
import { applyDefinitions } from './tag.pack.js'
import { createTagRepository, parseDefinition, type TagRepository } from './tag.repository.js'

/**
 * Save-time dry runs: a definition that passes the schema and the guard but fails in the engine
 * (a cast that cannot hold, a value the tag's type cannot take) used to be saved and then fail
 * every run. It is computed once on a sample at save and refused with the field at fault.
 */

let e: TestEngine
let tenant: Tenant
let repo: TagRepository
const OLD = '2020-01-01 00:00:00.000'

async function refusal(def: unknown): Promise<{ code: string; issues: ErrorIssue[] }> {
  try {
    await repo.save(tenant.id, def, 'test')
  } catch (err) {
    if (!isAppError(err)) throw err
    return { code: err.code, issues: [...(err.issues ?? [])] }
  }
  throw new Error('saved')
}

beforeAll(async () => {
  e = await openTestEngine()
  const tenants = createTenantService({ system: e.db.system, defaultTimeZone: 'Asia/Shanghai' })
  tenant = await tenants.create({ slug: 'dry-bank', name: 'Dry bank' })
  repo = createTagRepository({ db: e.db })
  await e.db.forTenant(tenant.id).insert('customers', [1, 2].map((k) => ({ customer_key: k, customer_no: `C${k}`, gender: 'male', birth_date: '1950-01-01', opened_at: OLD, updated_at: OLD })))
}, 60_000)

afterAll(async () => {
  await e?.close()
})

describe('save-time dry run', () => {
  it.each([
    ['a cast the data cannot take', 'boolean', "SELECT customer_key, toUInt8(concat('x', gender)) AS value FROM $customers"],
    ['a number tag given text', 'number', "SELECT customer_key, concat('n', gender) AS value FROM $customers"],
    ['a column the source does not have', 'number', 'SELECT customer_key, phone_hash AS value FROM $customers'],
  ])('refuses a SQL tag with %s, naming rule.sql', async (_what, type, sql) => {
    const r = await refusal(testTagDef('bad_sql', type, { kind: 'sql', sql }))
    expect(r.code).toBe('DRY_RUN_FAILED')
    expect(r.issues).toEqual([expect.objectContaining({ field: 'rule.sql', code: 'dry_run_failed' })])
    expect(await repo.get(tenant.id, 'bad_sql')).toBeUndefined()
  })

  it('saves what computes, and writes nothing while checking', async () => {
    await repo.save(tenant.id, testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }), 'test')
    await repo.save(tenant.id, testTagDef('kinds', 'string_list', { kind: 'sql', sql: "SELECT customer_key, groupUniqArray(kind) AS value FROM $accounts GROUP BY customer_key" }), 'test')
    await repo.save(tenant.id, testTagDef('active_30d', 'number', { kind: 'window', measure: 'count', days: 30 }), 'test')
    await repo.save(tenant.id, testTagDef('rich', 'number', { kind: 'score', method: 'quantile', input: { feature: 'aum' } }), 'test')
    expect((await repo.list(tenant.id)).map((t) => t.name).sort()).toEqual(['active_30d', 'elder', 'kinds', 'rich'])
    const [n] = await e.db.forTenant(tenant.id).query(
      `SELECT (SELECT count() FROM tag_stage WHERE tenant_id = {tenant:UInt16}) + (SELECT count() FROM tag_values WHERE tenant_id = {tenant:UInt16}) AS n`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    expect(n!.n).toBe(0)
  })
})

describe('applying many definitions', () => {
  it('saves none when one would fail, naming it by its index', async () => {
    const before = (await repo.list(tenant.id)).map((t) => `${t.name}@${t.version}`)
    const defs = [
      testTagDef('young', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'lt', value: 30 } }),
      testTagDef('broken', 'number', { kind: 'sql', sql: "SELECT customer_key, concat('n', gender) AS value FROM $customers" }),
    ].map((d) => parseDefinition(d))
    try {
      await applyDefinitions(repo, tenant.id, defs, 'test')
      expect.unreachable()
    } catch (err) {
      expect(isAppError(err) && err.code).toBe('DRY_RUN_FAILED')
      expect(isAppError(err) && err.issues?.[0]?.field).toBe('definitions.1.rule.sql')
    }
    expect((await repo.list(tenant.id)).map((t) => `${t.name}@${t.version}`)).toEqual(before)
  })
})
