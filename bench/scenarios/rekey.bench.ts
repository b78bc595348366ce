import { createPii } from '../../core/pii.js'
import { createDigestMigration } from '../../tenants/digest.migration.js'
import { createTenantService } from '../../tenants/tenants.service.js'
import type { BenchContext, BenchScenario } from '../harness.js'

/**
 * The re-keying job (`npm run bench rekey -- --set customers=N --set page=P`): two banks of N
 * customers each, every one with a phone digest and an identity-number trait under the shared
 * key (version 1). The baseline, on the second bank: the same writes done in one statement per
 * table (every row's new version, then the replaced versions deleted), what the job must at
 * least cost. Then the job on the first bank, page by page, and a second run with nothing to do.
 */

async function seed(ctx: BenchContext, tenant: number, n: number) {
  // Any 64 lowercase hex is a version-1 digest to the job: SHA-256 of the number stands in.
  const p = { t: tenant, n }
  await ctx.db.system.command(
    `INSERT INTO customers (tenant_id, customer_key, customer_no, gender, region_code, branch_code, occupation, phone_hash, name_masked, opened_at, updated_at)
     SELECT {t:UInt16}, number + 1, toString(number), 'unknown', 'r', 'b', 'o', lower(hex(SHA256(toString(number)))), '', now64(3), now64(3) FROM numbers({n:UInt32})`,
    p,
  )
  await ctx.db.system.command(
    `INSERT INTO customer_traits (tenant_id, customer_key, trait, value, hashed, updated_at)
     SELECT {t:UInt16}, number + 1, 'national_id', lower(hex(SHA256(concat('id', toString(number))))), 1, now64(3) FROM numbers({n:UInt32})`,
    p,
  )
}

export const scenario: BenchScenario = {
  name: 'rekey',
  description:
    "Re-keying version-1 digests to a bank's own (POST /v1/tenant/digests/rekey): a bank of N customers with a phone digest and an identity-number trait each, against one statement per table doing the same writes on a second bank of the same size.",
  async run(ctx: BenchContext) {
    const n = Number(ctx.args.customers ?? 1_000_000)
    const pageRows = Number(ctx.args.page ?? 2000)
    const say = (s: string) => console.log(`  ${s}`)
    const tenants = createTenantService({ system: ctx.db.system, defaultTimeZone: 'Asia/Shanghai' })
    const bank = await tenants.create({ slug: 'bench-rekey', name: 'bench' })
    const other = await tenants.create({ slug: 'bench-rekey-floor', name: 'floor' })
    let t0 = performance.now()
    await seed(ctx, bank.id, n)
    await seed(ctx, other.id, n)
    say(`seeded 2 x ${n} customers and traits in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    const floorDb = ctx.db.forTenant(other.id)
    t0 = performance.now()
    await floorDb.command(
      `INSERT INTO customers (tenant_id, customer_key, customer_no, gender, birth_date, region_code, branch_code, occupation, phone_hash, name_masked, language, elder_mode, opened_at, updated_at, deleted)
       SELECT tenant_id, customer_key, customer_no, gender, birth_date, region_code, branch_code, occupation, concat('k2:', phone_hash), name_masked, language, elder_mode, opened_at, updated_at + toIntervalMillisecond(1), deleted
       FROM customers FINAL WHERE tenant_id = {tenant:UInt16}`,
    )
    await floorDb.command(
      `INSERT INTO customer_traits (tenant_id, customer_key, trait, value, hashed, updated_at)
       SELECT tenant_id, customer_key, trait, concat('k2:', value), hashed, updated_at + toIntervalMillisecond(1) FROM customer_traits FINAL WHERE tenant_id = {tenant:UInt16}`,
    )
    await floorDb.command(`DELETE FROM customers WHERE tenant_id = {tenant:UInt16} AND NOT startsWith(phone_hash, 'k2:')`)
    await floorDb.command(`DELETE FROM customer_traits WHERE tenant_id = {tenant:UInt16} AND NOT startsWith(value, 'k2:')`)
    const floorS = (performance.now() - t0) / 1000
    say(`baseline (one statement per table): ${floorS.toFixed(1)} s`)

    const m = createDigestMigration({ db: ctx.db, pii: createPii('bench-secret-bench-secret-bench-secret'), pageRows })
    t0 = performance.now()
    const run = await m.rekey(bank.id)
    const jobS = (performance.now() - t0) / 1000
    say(`job: ${jobS.toFixed(1)} s, ${run.pages} pages`)
    if (run.after.sharedKey.customersPhone || run.after.sharedKey.traits) throw new Error(`digests left: ${JSON.stringify(run.after.sharedKey)}`)
    t0 = performance.now()
    const again = await m.rekey(bank.id)
    const againS = (performance.now() - t0) / 1000
    if (again.pages) throw new Error('a second run found work')
    const rows = run.converted.customersPhone + run.converted.traits
    return {
      params: { customers: n, pageRows, rows },
      figures: {
        baseline_s: floorS,
        job_s: jobS,
        job_rows_per_s: rows / jobS,
        pages: run.pages,
        second_run_s: againS,
      },
      ratios: { job_vs_baseline: jobS / floorS },
      notes: [
        'The job also reads each page (FINAL, in key order), counts before and after, and re-keys in JavaScript (one HMAC a digest).',
        'The baseline rewrites the other bank in two INSERT … SELECT and two DELETE statements: it neither pages nor computes an HMAC.',
      ],
    }
  },
}
