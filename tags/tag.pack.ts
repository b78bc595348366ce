import fs from 'node:fs'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'
import { AppError, type ErrorIssue } from '../core/errors.js'
import { projectPath } from '../core/paths.js'
import { dependencyLevels, parseDefinition, type TagRepository } from './tag.repository.js'
import type { TagDefinition } from './tag.schema.js'

/**
 * Definitions kept in files (YAML or JSON: one definition or a list), as a data engineer keeps
 * them in git, and the banking pack shipped in tags/pack/. Every problem in a file is reported at
 * once, located by file, index and field; nothing is saved unless the whole file is valid.
 */

export const BANKING_PACK = projectPath('tags', 'pack', 'banking.yaml')

export function parseDefinitionsText(text: string, source: string): TagDefinition[] {
  let doc: unknown
  try {
    doc = source.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { maxAliasCount: 0 })
  } catch (e) {
    throw new AppError('VALIDATION_FAILED', `${source}: not valid ${source.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}`)
  }
  const items = Array.isArray(doc) ? doc : [doc]
  const issues: ErrorIssue[] = []
  const defs: TagDefinition[] = []
  const names = new Set<string>()
  items.forEach((item, i) => {
    const prefix = Array.isArray(doc) ? `${i}.` : ''
    try {
      const d = parseDefinition(item, prefix)
      if (names.has(d.name)) issues.push({ field: `${prefix}name`, message: `${d.name} is defined twice` })
      names.add(d.name)
      defs.push(d)
    } catch (e) {
      if (e instanceof AppError && e.issues) issues.push(...e.issues)
      else throw e
    }
  })
  if (issues.length) {
    throw new AppError('VALIDATION_FAILED', `${source}: ${issues.length} problem(s): ${issues.slice(0, 5).map((i) => `${i.field}: ${i.message}`).join('; ')}`, { issues })
  }
  return defs
}

/** Reads a file, or every .yaml/.yml/.json file of a directory. */
export function readDefinitionFiles(p: string): TagDefinition[] {
  const files = fs.statSync(p).isDirectory()
    ? fs.readdirSync(p).filter((f) => /\.(ya?ml|json)$/.test(f)).sort().map((f) => path.join(p, f))
    : [p]
  const defs = files.flatMap((f) => parseDefinitionsText(fs.readFileSync(f, 'utf8'), path.basename(f)))
  const seen = new Set<string>()
  for (const d of defs) {
    if (seen.has(d.name)) throw new AppError('VALIDATION_FAILED', `${d.name} is defined in more than one file.`)
    seen.add(d.name)
  }
  return defs
}

export interface ApplyResult {
  name: string
  version: number
  changed: boolean
}

/**
 * Saves definitions in dependency order, so each one's dependencies exist when it is saved.
 * Every definition is computed on a sample first (against the others as they will be), so one
 * that would fail its runs stops the whole set before any is saved; issues name it as
 * `definitions.<index>.<field>`.
 */
export async function applyDefinitions(repo: TagRepository, tenantId: number, defs: readonly TagDefinition[], actor: string): Promise<ApplyResult[]> {
  const stored = await repo.list(tenantId)
  const existing = new Set(stored.map((t) => t.name))
  const levels = dependencyLevels(defs, existing)
  const incoming = new Set(defs.map((d) => d.name))
  const after = [...stored.filter((t) => !incoming.has(t.name)), ...defs]
  // Every check of a save, for every definition against the set as it will be, before any is
  // saved: one refused definition leaves the others unsaved too.
  for (const [i, d] of defs.entries()) {
    const others = after.filter((x) => x.name !== d.name)
    await repo.check(tenantId, d, others, `definitions.${i}.`)
    await repo.dryRun(tenantId, d, others, `definitions.${i}.`)
  }
  const out: ApplyResult[] = []
  for (const level of levels) {
    for (const d of level) {
      const r = await repo.save(tenantId, d, actor, { dryRun: false, checked: true })
      out.push({ name: d.name, version: r.tag.version, changed: r.changed })
    }
  }
  return out
}
