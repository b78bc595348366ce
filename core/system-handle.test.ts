import fs from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

/**
 * The fence around the unscoped handle. `Db.system` (and `SystemDb.raw`, the bare client) reads
 * and writes every tenant's rows; only these modules may hold it, each for a reason the tenant
 * layer cannot serve. Everything else gets a `TenantDb` from `db.forTenant`. Tests, fixtures and
 * benchmarks are outside the fence (they check isolation from above it).
 */
const ALLOWED: Record<string, string> = {
  'core/db.ts': 'defines both handles',
  'sql/migrate.ts': 'migrations: the schema of every tenant',
  'tenants/tenants.service.ts': 'the tenant registry: there is no tenant yet',
  'tenants/keys.service.ts': 'API keys, looked up by their hash before the tenant is known',
  'tenants/cors.service.ts': "each bank's browser origins: a registry table beside tenant_privacy",
  'ingest/event-writer.ts': "the shared event writer: one insert holds many tenants' events",
  'ingest/dedup-index.ts': "the shared event writer's dedup questions: one lookup for every tenant in a flush, and the index put right after a crash",
  'ingest/key-allocator.ts': 'customer key blocks, claimed across writers',
  'ingest/ingest.module.ts': 'hands the handle to the writer and the key allocator',
  'ingest/import/import.staging.ts': 'working tables and files of a bulk import, named per import',
  'ingest/import/import.service.ts': "hands the handle to the staging; reads the tenant's time zone from the registry",
  'demo/demo.generator.ts': "the demo's bulk customer insert and its count of existing tenants",
  'catalogue/catalogue.service.ts': "reads the schema's column comments (system.columns), no rows",
  'recommend/model.build.ts': 'drops old build partitions, after checking that each holds one tenant alone',
  'audit/audit.service.ts': "the operator's own entries (tenant 0, outside every tenant)",
  'privacy/erasure.watch.ts': "erasures run by another process, one look over every tenant's jobs (their in-memory structures drop the customers)",
  'tenants/retention.job.ts': 'retention: one DELETE per table for every bank sharing a cutoff (a mutation versions every part of the table, so one per bank costs as many times)',
  'server/runtime.ts': 'composition root',
  'cli/main.ts': 'composition root',
}

const ROOT = path.resolve(import.meta.dirname, '..')
const SKIP_DIRS = new Set(['node_modules', 'dist', 'console', 'test', 'bench', '.tmp', '.qianmian', '.kafka', '.git'])
const exempt = (rel: string) => /\.(test|fixture)\.ts$/.test(rel) || rel.endsWith('.d.ts')

function sourceFiles(dir = ROOT, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.') && e.isDirectory()) continue
    const p = path.join(dir, e.name)
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) sourceFiles(p, out)
    } else if (e.name.endsWith('.ts') && !exempt(path.relative(ROOT, p))) out.push(p)
  }
  return out
}

/**
 * The files (relative to the repository) that touch the system handle, with the first place each
 * does. Read from the syntax alone (a type-checked program took over a minute on two cores): a
 * `.system` access or `{ system }` destructuring of anything, and any mention of `SystemDb`. A
 * module handed the handle under another name must still name the type to declare its dependency.
 */
function systemHandleUsers(files: Map<string, string>): Map<string, string> {
  const users = new Map<string, string>()
  for (const [rel, text] of files) {
    const sf = ts.createSourceFile(rel, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS)
    const found = (n: ts.Node, what: string) => {
      if (!users.has(rel)) users.set(rel, `${what} at line ${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`)
    }
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n) && n.text === 'SystemDb') found(n, 'SystemDb')
      else if (ts.isPropertyAccessExpression(n) && n.name.text === 'system') found(n, '.system')
      else if (ts.isElementAccessExpression(n) && ts.isStringLiteralLike(n.argumentExpression) && n.argumentExpression.text === 'system')
        found(n, "['system']")
      else if (ts.isBindingElement(n) && ts.isObjectBindingPattern(n.parent)) {
        const key = n.propertyName ?? n.name
        if ((ts.isIdentifier(key) || ts.isStringLiteralLike(key)) && key.text === 'system') found(n, '{ system }')
      }
      ts.forEachChild(n, visit)
    }
    visit(sf)
  }
  return users
}

describe('the system handle fence', () => {
  it('only the listed modules touch Db.system or SystemDb', () => {
    const files = new Map(sourceFiles().map((f) => [path.relative(ROOT, f), fs.readFileSync(f, 'utf8')]))
    const users = systemHandleUsers(files)
    const outside = [...users].filter(([f]) => !(f in ALLOWED)).map(([f, where]) => `${f}: ${where}`)
    expect(outside, 'use db.forTenant(tenantId), or add the module to ALLOWED with the reason it needs every tenant').toEqual([])
  })

  it('catches every way of reaching it, and nothing else', () => {
    const cases: [string, string | undefined][] = [
      ["import type { SystemDb } from './db.js'", 'SystemDb at line 1'],
      ['export const f = (db: Db) => db.system.query("SELECT 1")', '.system at line 1'],
      ['export const f = (db: Db) => db?.system', '.system at line 1'],
      ["export const f = (db: Db) => db['system']", "['system'] at line 1"],
      ['export const f = ({ system }: Db) => system', '{ system } at line 1'],
      ['export function f(db: Db) {\n  const { system: s } = db\n  return s\n}', '{ system } at line 2'],
      ['export const f = (s: { sys: SystemDb }) => s.sys.raw', 'SystemDb at line 1'],
      ['export const f = (db: Db) => db.forTenant(1).query("SELECT 1")', undefined],
      ["export const f = (o: { system: string }) => o['sys' + 'tem']", undefined],
    ]
    for (const [text, expected] of cases) expect(systemHandleUsers(new Map([['probe.ts', text]])).get('probe.ts'), text).toBe(expected)
  })
})
