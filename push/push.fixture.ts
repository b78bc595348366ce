import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { createMetrics, type Metrics } from '../core/metrics.js'
import { chDateTime } from '../core/time.js'
import { newRunId } from '../core/run-id.js'
import { runTags } from '../tags/tag.pipeline.js'
import { createTagRepository } from '../tags/tag.repository.js'
import { testTagDef } from '../test/fixtures.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createTenantService, type TenantService } from '../tenants/tenants.service.js'
import { moduleApp } from '../test/app.js'
import { createKeyService, type KeyService } from '../tenants/keys.service.js'
import { createPushModule, type PushDeps, type PushModule } from './push.module.js'

/**
 * Push tests on a real embedded engine: a bank of `n` customers per tenant with profile,
 * consents, loan installments and bills, and the tags the push scheduler reads (elder; a date
 * tag), computed by the real tag pipeline.
 *
 * Customer k (1..n) of a tenant with prefix P: customer number `P000k`; born 1950-06-01 (elder)
 * when k <= 4, 1990-03-15 when k = 7, else 1990-06-01; English when k = 5; marketing push
 * granted when k <= 10 (or for all with `marketingForAll`), refused when k = 11; service push
 * refused when k = 12; an unpaid installment (amount 1000 + k) due
 * `loanDay` when k <= 3; an unpaid water bill (88.5) due `loanDay` when k = 6.
 */

export interface PushFixture {
  engine: TestEngine
  tenants: TenantService
  metrics: Metrics
  push: PushModule
  holdout: { perMille: number }
  close(): Promise<void>
}

export async function openPush(deps: Partial<PushDeps> = {}): Promise<PushFixture> {
  const engine = await openTestEngine()
  const metrics = createMetrics({ collectDefault: false })
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'Asia/Shanghai' })
  const holdout = { perMille: 0 }
  const push = createPushModule({ db: engine.db, tenants, log: engine.log, metrics, holdoutPerMille: () => holdout.perMille, lease: { idleRefreshMs: 0 }, ...deps })
  return {
    engine,
    tenants,
    metrics,
    push,
    holdout,
    async close() {
      await push.close()
      await engine.close()
    },
  }
}

export interface PushAppFixture {
  fx: PushFixture
  app: FastifyInstance
  /** Issues the keys a test calls with. */
  keyService: KeyService
  close(): Promise<void>
}

/** The push routes over HTTP (fastify's inject) on a real engine, with a key service to issue keys. */
export async function openPushApp(deps: Partial<PushDeps> = {}): Promise<PushAppFixture> {
  const fx = await openPush(deps)
  const keyService = createKeyService({ system: fx.engine.db.system, tenants: fx.tenants, cacheTtlMs: 60_000 })
  const app = await moduleApp({ db: fx.engine.db, log: fx.engine.log, metrics: fx.metrics, tenants: fx.tenants, keys: keyService }, [fx.push.routes])
  return {
    fx,
    app,
    keyService,
    async close() {
      await app.close()
      await fx.close()
    },
  }
}

export const no = (prefix: string, k: number) => `${prefix}${String(k).padStart(4, '0')}`

export async function seedBank(
  fx: PushFixture,
  o: { slug: string; timeZone: string; prefix: string; n: number; loanDay: string; asOf: Date; marketingForAll?: boolean },
): Promise<number> {
  const tenant = await fx.tenants.create({ slug: o.slug, name: o.slug, timeZone: o.timeZone })
  const db = fx.engine.db.forTenant(tenant.id)
  const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
  const ks = Array.from({ length: o.n }, (_, i) => i + 1)
  await db.insert('customers', ks.map((k) => ({
    customer_key: k, customer_no: no(o.prefix, k), gender: 'unknown', birth_date: k <= 4 ? '1950-06-01' : k === 7 ? '1990-03-15' : '1990-06-01', region_code: 'r', branch_code: 'b',
    occupation: 'o', phone_hash: '', name_masked: `张${k}*`, language: k === 5 ? 'en' : 'zh', opened_at: at, updated_at: at,
  })))
  await db.insert('identities', ks.map((k) => ({ id_kind: 'customer_no', id_value: no(o.prefix, k), customer_key: k, source: 'test', created_at: at, updated_at: at })))
  const consent = (k: number, purpose: string, granted: number) => ({ customer_key: k, purpose, channel: 'push', granted, source: 'app', updated_at: at })
  const granted = ks.filter((k) => k !== 11 && (o.marketingForAll || k <= 10))
  await db.insert('consents', [...granted.map((k) => consent(k, 'marketing', 1)), consent(11, 'marketing', 0), consent(12, 'service', 0)])
  await db.insert('loan_schedules', ks.filter((k) => k <= 3).map((k) => ({
    customer_key: k, loan_no: `L${k}`, installment_no: 1, due_date: o.loanDay, amount_due: 1000 + k, amount_paid: 0, paid_at: null, status: 'due', updated_at: at,
  })))
  await db.insert('bills', [{ customer_key: 6, bill_no: 'B6', biller: 'water', amount: 88.5, due_date: o.loanDay, status: 'unpaid', paid_at: null, payer_key: 0, updated_at: at }])
  const repo = createTagRepository({ db: fx.engine.db })
  await repo.save(tenant.id, testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, ['service', 'marketing', 'security']), 'test')
  await repo.save(tenant.id, testTagDef('next_installment_date', 'date', { kind: 'rule', from: { feature: 'next_installment_date' } }, { sensitivity: 'medium' }, ['service']), 'test')
  await runTags({ db: fx.engine.db }, { tenantId: tenant.id, timeZone: o.timeZone, defs: await repo.list(tenant.id), mode: 'full', asOf: o.asOf, runId: newRunId() })
  return tenant.id
}

/** A campaign body with defaults a test overrides. */
export function campaign(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'test',
    purpose: 'marketing',
    priority: 'low',
    schedule: { kind: 'cron', cron: '0 10 * * *' },
    message: { body: { zh: '您好 {{name}}', en: 'Hello {{name}}' } },
    ...over,
  }
}

const targetRow = z.object({
  customer_key: z.coerce.number(),
  customer_no: z.string(),
  status: z.string(),
  reason: z.string(),
  due_at: z.string(),
  send_date: z.string(),
  quiet_exempt: z.coerce.number(),
  variant: z.string(),
  language: z.string(),
  title: z.string(),
  body: z.string(),
  target_id: z.string(),
  local_date: z.string(),
})
export type TargetRow = z.infer<typeof targetRow>

/** A campaign's target rows by customer key. */
export async function targetsOf(fx: PushFixture, tenantId: number, campaignId: string): Promise<Map<number, TargetRow>> {
  const rows = await fx.engine.db.forTenant(tenantId).query(
    `SELECT customer_key, customer_no, toString(status) AS status, reason, toString(due_at) AS due_at, toString(send_date) AS send_date, quiet_exempt,
            toString(variant) AS variant, language, title, body, target_id, toString(local_date) AS local_date
     FROM push_targets FINAL WHERE tenant_id = {tenant:UInt16} AND campaign_id = {cid:String} ORDER BY customer_key, local_date`,
    { cid: campaignId },
    targetRow,
  )
  return new Map(rows.map((r) => [r.customer_key, r]))
}

/** Customer keys of the targets with a status or a suppression reason. */
export const keysWith = (targets: Map<number, TargetRow>, what: string) =>
  [...targets.values()].filter((t) => (what === 'queued' ? t.status === 'queued' : t.reason === what)).map((t) => t.customer_key)
