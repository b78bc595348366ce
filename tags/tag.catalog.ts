import { z } from 'zod'
import type { Db } from '../core/db.js'
import { AppError } from '../core/errors.js'
import type { TagRepository } from './tag.repository.js'
import { SENSITIVITIES, type Sensitivity, type StoredTag } from './tag.schema.js'
import { valuesAsOfSql } from './tag.values.js'

/**
 * The read side of tags: the catalogue (definition, coverage, distribution, last run) and a
 * customer's profile with current or past tag values. Sensitivity is honoured here: read keys
 * see low and medium tags, admin keys everything.
 */

export interface TagState {
  version: number
  build: string
  covered: number
  changed: number
  runId: string
  computedAt: string
  asOf: string
}

export interface CatalogEntry extends StoredTag {
  state: TagState | null
  /** Share of the tenant's customers with a value (0..1). */
  coverage: number | null
}

export interface Bucket {
  value: string
  lo?: number
  hi?: number
  customers: number
}

const stateRow = z.object({
  tag: z.string(),
  version: z.coerce.number(),
  build: z.string(),
  covered: z.coerce.number(),
  changed: z.coerce.number(),
  run_id: z.string(),
  computed_at: z.string(),
  as_of: z.string(),
})

/** High-sensitivity tags (risk flags) are visible only to keys allowed to read personal data. */
export function visibleTo(withSensitive: boolean, s: Sensitivity): boolean {
  return withSensitive || SENSITIVITIES.indexOf(s) < SENSITIVITIES.indexOf('high')
}

export function createTagCatalog(deps: { db: Db; repo: TagRepository }) {
  const { db, repo } = deps

  async function states(tenantId: number): Promise<Map<string, TagState>> {
    const rows = await db.forTenant(tenantId).query(
      `SELECT tag, version, toString(build) AS build, covered, changed, toString(run_id) AS run_id,
              toString(computed_at) AS computed_at, toString(as_of) AS as_of
       FROM tag_state FINAL WHERE tenant_id = {tenant:UInt16}`,
      {},
      stateRow,
    )
    return new Map(rows.map((r) => [r.tag, { version: r.version, build: r.build, covered: r.covered, changed: r.changed, runId: r.run_id, computedAt: r.computed_at, asOf: r.as_of }]))
  }

  async function customerCount(tenantId: number): Promise<number> {
    const [r] = await db
      .forTenant(tenantId)
      .query(`SELECT count() AS n FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0`, {}, z.object({ n: z.coerce.number() }))
    return r?.n ?? 0
  }

  return {
    async list(tenantId: number, withSensitive: boolean, o: { q?: string | undefined; purpose?: string | undefined } = {}): Promise<CatalogEntry[]> {
      const [defs, st, total] = await Promise.all([repo.list(tenantId), states(tenantId), customerCount(tenantId)])
      const q = o.q?.toLowerCase()
      return defs
        .filter((d) => visibleTo(withSensitive, d.sensitivity))
        .filter((d) => !o.purpose || (d.purpose as string[]).includes(o.purpose))
        .filter((d) => !q || [d.name, d.description.zh, d.description.en, d.owner].some((s) => s.toLowerCase().includes(q)))
        .map((d) => {
          const s = st.get(d.name) ?? null
          return { ...d, state: s, coverage: s && total ? Number((s.covered / total).toFixed(4)) : null }
        })
    },

    async get(tenantId: number, name: string, withSensitive: boolean): Promise<CatalogEntry & { distribution: Bucket[] }> {
      const d = await repo.get(tenantId, name)
      if (!d || !visibleTo(withSensitive, d.sensitivity)) throw new AppError('NOT_FOUND', `No tag named ${name}.`)
      const [st, total] = await Promise.all([states(tenantId), customerCount(tenantId)])
      const s = st.get(name) ?? null
      let distribution: Bucket[] = []
      if (s) {
        const rows = await db.forTenant(tenantId).query(
          `SELECT value, lo, hi, cardinality FROM tag_bitmaps
           WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND build = {build:UInt64} AND value != '*'
           ORDER BY lo, value LIMIT 200`,
          { tag: name, build: s.build },
          z.object({ value: z.string(), lo: z.coerce.number(), hi: z.coerce.number(), cardinality: z.coerce.number() }),
        )
        const numeric = d.type === 'number' || d.type === 'date'
        distribution = rows.map((r) => ({ value: r.value, ...(numeric ? { lo: r.lo, hi: r.hi } : {}), customers: r.cardinality }))
        if (!numeric) distribution.sort((a, b) => b.customers - a.customers)
      }
      return { ...d, state: s, coverage: s && total ? Number((s.covered / total).toFixed(4)) : null, distribution }
    },

    /** A customer's tag values now, or as they were at `at` (from history). */
    async customerTags(
      tenantId: number,
      customerKey: number,
      withSensitive: boolean,
      at?: string,
    ): Promise<{ name: string; type: string; value: string | number | boolean | string[]; purpose: string[]; sensitivity: Sensitivity }[]> {
      const defs = (await repo.list(tenantId)).filter((d) => visibleTo(withSensitive, d.sensitivity))
      if (!defs.length) return []
      const names = defs.map((d) => d.name)
      const source = at
        ? valuesAsOfSql('{tags:Array(String)}', `{at:DateTime64(3, 'UTC')}`, 'AND customer_key = {key:UInt32}')
        : `(SELECT tag, customer_key, value, num, list FROM tag_values FINAL
            WHERE tenant_id = {tenant:UInt16} AND tag IN {tags:Array(String)} AND customer_key = {key:UInt32} AND is_deleted = 0)`
      const rows = await db.forTenant(tenantId).query(
        `SELECT toString(tag) AS tag, value, num, list FROM ${source}`,
        { tags: names, key: customerKey, ...(at ? { at } : {}) },
        z.object({ tag: z.string(), value: z.string(), num: z.coerce.number(), list: z.array(z.string()) }),
      )
      const byName = new Map(defs.map((d) => [d.name, d]))
      return rows
        .map((r) => {
          const d = byName.get(r.tag)!
          const value = d.type === 'boolean' ? true : d.type === 'number' ? r.num : d.type === 'string_list' ? r.list : r.value
          return { name: r.tag, type: d.type, value, purpose: d.purpose, sensitivity: d.sensitivity }
        })
        .sort((a, b) => a.name.localeCompare(b.name))
    },

    /** Every change of one tag for one customer, oldest first. */
    async history(tenantId: number, customerKey: number, tag: string, withSensitive: boolean) {
      const d = await repo.get(tenantId, tag)
      if (!d || !visibleTo(withSensitive, d.sensitivity)) throw new AppError('NOT_FOUND', `No tag named ${tag}.`)
      return db.forTenant(tenantId).query(
        `SELECT toString(valid_from) AS validFrom, value, removed = 1 AS removed, tag_version AS version
         FROM tag_history FINAL WHERE tenant_id = {tenant:UInt16} AND tag = {tag:String} AND customer_key = {key:UInt32}
         ORDER BY valid_from LIMIT 1000`,
        { tag, key: customerKey },
        z.object({ validFrom: z.string(), value: z.string(), removed: z.coerce.boolean(), version: z.coerce.number() }),
      )
    },
  }
}

export type TagCatalog = ReturnType<typeof createTagCatalog>
