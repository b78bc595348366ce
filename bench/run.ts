import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Command } from 'commander'
import { openBenchEngine, writeResult, type BenchScenario } from './harness.js'

/**
 * `npm run bench [scenario ...] [-- --key value]`: runs each scenario on a fresh embedded engine
 * and writes bench/results/<scenario>.json and .md. Without a name, runs every scenario.
 */
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scenarios')

async function loadScenarios(): Promise<Map<string, BenchScenario>> {
  const out = new Map<string, BenchScenario>()
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.bench.ts')).sort()) {
    const mod = (await import(pathToFileURL(path.join(dir, f)).href)) as { scenario: BenchScenario }
    out.set(mod.scenario.name, mod.scenario)
  }
  return out
}

const program = new Command('bench')
  .argument('[scenarios...]', 'scenario names (default: all)')
  .allowUnknownOption(true)
  .option('--set <pairs...>', 'scenario options as key=value', [])
  .action(async (names: string[], opts: { set: string[] }) => {
    const all = await loadScenarios()
    const chosen = names.length ? names : [...all.keys()]
    const args = Object.fromEntries(opts.set.map((p) => p.split('=', 2) as [string, string]))
    for (const name of chosen) {
      const s = all.get(name)
      if (!s) {
        console.error(`Unknown scenario ${name}. Known: ${[...all.keys()].join(', ')}`)
        process.exitCode = 2
        return
      }
      console.log(`\n== ${s.name}: ${s.description}`)
      const engine = await openBenchEngine()
      const started = new Date()
      try {
        const result = await s.run({ ...engine.ctx, args })
        const files = writeResult(s, result, started, (Date.now() - started.getTime()) / 1000)
        console.log(fs.readFileSync(files.md, 'utf8'))
      } finally {
        await engine.close()
      }
    }
  })

await program.parseAsync(process.argv)
