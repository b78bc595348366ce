import { z } from 'zod'
import { TENANT_TABLES, type Db } from '../core/db.js'

/**
 * The data catalogue: every stored column, trait and tag with its JR/T 0171-2020 class. Columns
 * carry their class in the schema's own comments (`COMMENT 'C2: …'`, sql/*.sql), read back from
 * system.columns, so the catalogue cannot drift from the tables; a column without a declared
 * class holds no personal information of its own (keys, times, counters) and is listed as C1,
 * marked undeclared. C3 is never stored, so no entry has it.
 */
export type DataClass = 'C1' | 'C2'

export const catalogueView = z.object({
  columns: z.array(z.object({ table: z.string(), column: z.string(), type: z.string(), class: z.enum(['C1', 'C2']), declared: z.boolean(), comment: z.string() })),
  traits: z.array(z.object({ name: z.string(), class: z.enum(['C1', 'C2']), stored: z.enum(['digest', 'plain']) })),
  tags: z.array(z.object({ name: z.string(), class: z.enum(['C1', 'C2']), sensitivity: z.string() })),
})
export type Catalogue = z.infer<typeof catalogueView>

/** The tables of the catalogue: every tenant table, and the tenant registry and its settings. */
const TABLES = [...TENANT_TABLES, 'tenants', 'tenant_privacy']

const columnRow = z.object({ table: z.string(), name: z.string(), type: z.string(), comment: z.string() })

/** The class a column comment declares (`C2: …`, `C1`), or undefined. */
export function declaredClass(comment: string): DataClass | undefined {
  const m = /^(C[12])\b/.exec(comment.trim())
  return m ? (m[1] as DataClass) : undefined
}

export interface CatalogueService {
  catalogue(tenantId: number): Promise<Catalogue>
}

export function createCatalogueService(deps: { db: Db }): CatalogueService {
  let columns: Catalogue['columns'] | undefined
  /** The schema changes only with a migration (at start): read once. */
  async function schema() {
    columns ??= (
      await deps.db.system.query(
        `SELECT table, name, type, comment FROM system.columns
         WHERE database = currentDatabase() AND table IN {tables:Array(String)} ORDER BY table, position`,
        { tables: TABLES },
        columnRow,
      )
    ).map((c) => {
      const declared = declaredClass(c.comment)
      return { table: c.table, column: c.name, type: c.type, class: declared ?? 'C1', declared: declared !== undefined, comment: c.comment }
    })
    return columns
  }
  return {
    async catalogue(tenantId) {
      const db = deps.db.forTenant(tenantId)
      const traits = await db.query(
        `SELECT trait AS name, max(hashed) AS hashed FROM customer_traits WHERE tenant_id = {tenant:UInt16} GROUP BY trait ORDER BY trait`,
        {},
        z.object({ name: z.string(), hashed: z.coerce.number() }),
      )
      const tags = await db.query(
        `SELECT name, JSONExtractString(argMax(definition, version), 'sensitivity') AS sensitivity, argMax(retired, version) AS retired
         FROM tag_definitions WHERE tenant_id = {tenant:UInt16} GROUP BY name ORDER BY name`,
        {},
        z.object({ name: z.string(), sensitivity: z.string(), retired: z.coerce.number() }),
      )
      return {
        columns: await schema(),
        // A digested trait was a sensitive identifier (by name or found by value): C2 even as a digest.
        traits: traits.map((t) => ({ name: t.name, class: t.hashed ? 'C2' : 'C1', stored: t.hashed ? 'digest' : 'plain' })),
        // Medium and high sensitivity tags describe a customer's finances, risk or vulnerability.
        tags: tags.filter((t) => !t.retired).map((t) => ({ name: t.name, class: t.sensitivity === 'low' || t.sensitivity === '' ? 'C1' : 'C2', sensitivity: t.sensitivity || 'low' })),
      }
    },
  }
}
