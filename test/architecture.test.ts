import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/**
 * The README's folder diagram says which folder may import which; `.dependency-cruiser.cjs`
 * (run by `npm run lint`) enforces it. Both come from `dependency-layers.json`: this test fails
 * when the diagram or the rules drift from it, and prints the diagram to paste. It also keeps
 * SQL out of route files.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const layers = (JSON.parse(fs.readFileSync(path.join(root, 'dependency-layers.json'), 'utf8')) as { layers: string[][] }).layers
const require = createRequire(import.meta.url)
const config = require(path.join(root, '.dependency-cruiser.cjs')) as { forbidden: { name: string; from: { path?: string }; to: { path?: string } }[] }

/** The diagram, top layer first: an arrow goes from each layer to the one below it. */
function layerDiagram(ls: readonly (readonly string[])[]): string {
  const top = [...ls.keys()].reverse()
  const lines = ['```mermaid', 'flowchart TD']
  for (const i of top) lines.push(`  L${i}["${ls[i]!.map((f) => `${f}/`).join(' · ')}"]`)
  for (const i of top) if (i > 0) lines.push(`  L${i} --> L${i - 1}`)
  lines.push('```')
  return lines.join('\n')
}

/** What the diagram allows: each layer imports the layers its arrows reach. */
function allowedByDiagram(diagram: string): Map<string, Set<string>> {
  const boxes = new Map<string, string[]>()
  const arrows = new Map<string, string[]>()
  for (const line of diagram.split('\n')) {
    const box = /^\s*(L\d+)\["([^"]*)"\]$/.exec(line)
    if (box) boxes.set(box[1]!, box[2]!.split(' · ').map((f) => f.replace(/\/$/, '')))
    const arrow = /^\s*(L\d+) --> (L\d+)$/.exec(line)
    if (arrow) arrows.set(arrow[1]!, [...(arrows.get(arrow[1]!) ?? []), arrow[2]!])
  }
  const reach = (box: string, seen = new Set<string>()): Set<string> => {
    for (const next of arrows.get(box) ?? []) if (!seen.has(next)) reach(next, seen.add(next))
    return seen
  }
  const allowed = new Map<string, Set<string>>()
  for (const [box, folders] of boxes) for (const f of folders) allowed.set(f, new Set([...reach(box)].flatMap((b) => boxes.get(b) ?? [])))
  return allowed
}

/** What the dependency-cruiser rules allow: every layered folder except those its rule forbids. */
function allowedByRules(): Map<string, Set<string>> {
  const folders = layers.flat()
  const allowed = new Map<string, Set<string>>()
  for (const rule of config.forbidden.filter((r) => r.name.startsWith('layers-'))) {
    const from = rule.name.slice('layers-'.length)
    const forbidden = new RegExp(rule.to.path!)
    expect(rule.from.path).toBe(`^${from}/`)
    allowed.set(from, new Set(folders.filter((f) => f !== from && !forbidden.test(`${f}/x.ts`))))
  }
  return allowed
}

const readmeDiagram = () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('\n## Architecture'))
  return /```mermaid\n[\s\S]*?\n```/.exec(section)?.[0] ?? ''
}

/** SQL in a file: a statement's keywords, or a query call handed its text directly. */
const SQL = /\b(SELECT|INSERT\s+INTO|ALTER\s+TABLE|OPTIMIZE\s+TABLE)\b|\.(query|command|exec)\(\s*`/

function routeFiles(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name)
    if (e.isDirectory()) return routeFiles(rel)
    return e.name.endsWith('.routes.ts') ? [rel] : []
  })
}

describe('queries live in data-access files', () => {
  it('no route file holds SQL: routes call their capability\'s repositories and services', () => {
    const files = layers.flat().flatMap((d) => routeFiles(d))
    expect(files.length).toBeGreaterThan(20)
    expect(files.filter((f) => SQL.test(fs.readFileSync(path.join(root, f), 'utf8')))).toEqual([])
  })

  it('the check sees SQL in a route', () => {
    expect(SQL.test("const rows = await db.forTenant(t).query(`SELECT name FROM segment_runs WHERE tenant_id = {tenant:UInt16}`, {}, row)")).toBe(true)
    expect(SQL.test('await tdb.command(`ALTER TABLE t DELETE WHERE 1`)')).toBe(true)
    expect(SQL.test('const page = await members(db.forTenant(t), id, { limit: 10 })')).toBe(false)
  })
})

describe('the architecture diagram and the dependency rules', () => {
  it('the README shows the layers of dependency-layers.json', () => {
    expect(readmeDiagram(), `paste into the README's Architecture section:\n${layerDiagram(layers)}\n`).toBe(layerDiagram(layers))
  })

  it("the diagram's arrows allow exactly what the dependency-cruiser rules allow", () => {
    const byDiagram = allowedByDiagram(readmeDiagram())
    const byRules = allowedByRules()
    expect([...byRules.keys()].sort()).toEqual(layers.flat().sort())
    for (const f of layers.flat()) expect([...(byDiagram.get(f) ?? [])].sort(), f).toEqual([...(byRules.get(f) ?? [])].sort())
  })

  it('a folder never may import one of its own layer or above (so folders cannot form a cycle)', () => {
    const byRules = allowedByRules()
    layers.forEach((layer, i) => {
      for (const f of layer) for (const g of byRules.get(f) ?? []) expect(layers.findIndex((l) => l.includes(g)), `${f} -> ${g}`).toBeLessThan(i)
    })
  })

  it('the parsing above sees arrows: a diagram missing one allows less', () => {
    const cut = layerDiagram(layers).replace(/\n\s*L3 --> L2/, '')
    expect(allowedByDiagram(cut).get('segments')?.has('ingest')).toBe(false)
    expect(allowedByDiagram(layerDiagram(layers)).get('segments')?.has('ingest')).toBe(true)
  })
})
