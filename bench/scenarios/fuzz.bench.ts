import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchScenario } from '../harness.js'
import type { FuzzFailure } from '../../test/fuzz.js'

/**
 * `npm run bench fuzz [-- --set requests=N --set seed=S]`: the fuzz test's generator, longer (the
 * test sends 2,000). The app runs in a child process on its own engine. Reports answers by route
 * and status, every contract break (a 5xx, an uncoded 4xx) with its input, and what the
 * structural tenant check costs: a text's first run (EXPLAIN AST, then the query) and its later
 * runs (the cached verdict), each against the same text run unchecked on the system handle.
 */
interface ChildResult {
  requests: number
  ms: number
  health: number
  byRoute: Record<string, Record<string, number>>
  failures: FuzzFailure[]
  check: { selectOne: number; systemFirst: number; tenantFirst: number; systemRepeat: number; tenantRepeat: number }
}

async function runChild(opts: { seed: number; requests: number; checks: number }): Promise<ChildResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fuzz.child.ts', import.meta.url)), JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TEST_LOG_LEVEL: 'silent' },
  })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  const line = out.trim().split('\n').pop() ?? ''
  if (code !== 0 || !line.startsWith('{')) throw new Error(`the fuzz child exited with ${code}:\n${out.slice(-2000)}`)
  return JSON.parse(line) as ChildResult
}

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ')

export const scenario: BenchScenario = {
  name: 'fuzz',
  description: 'Seeded fuzz of every route (valid shapes and mutations, keys of several roles): answers by route and status, contract breaks with their input, and the cost of the structural tenant check.',
  async run(ctx) {
    const seed = Number(ctx.args.seed ?? 7)
    const requests = Number(ctx.args.requests ?? 10_000)
    const checks = Number(ctx.args.checks ?? 300)
    const r = await runChild({ seed, requests, checks })
    const statuses = [...new Set(Object.values(r.byRoute).flatMap((m) => Object.keys(m)))].sort()
    const totals: Record<string, number> = {}
    for (const m of Object.values(r.byRoute)) for (const [s, c] of Object.entries(m)) totals[s] = (totals[s] ?? 0) + c
    const table = [
      '## Answers by route and status',
      '',
      `| route | ${statuses.join(' | ')} |`,
      `| --- | ${statuses.map(() => '---:').join(' | ')} |`,
      ...Object.keys(r.byRoute)
        .sort()
        .map((route) => `| ${route} | ${statuses.map((s) => r.byRoute[route]![s] ?? '').join(' | ')} |`),
      `| **all** | ${statuses.map((s) => `**${totals[s] ?? 0}**`).join(' | ')} |`,
      '',
      '## Contract breaks (5xx, or a 4xx without its catalogue code)',
      '',
      ...(r.failures.length
        ? [
            '| route | mutation | request | answer | why |',
            '| --- | --- | --- | --- | --- |',
            ...r.failures.map((f) => `| ${f.route} | ${cell(f.mutation)} | ${cell(`${f.method} ${f.url.slice(0, 100)} ${f.payload.slice(0, 200)}`)} | ${cell(f.answer.slice(0, 200))} | ${cell(f.why)} |`),
          ]
        : ['None.']),
      '',
    ].join('\n')
    const c = r.check
    return {
      params: { seed, requests, checks, routes: Object.keys(r.byRoute).length },
      figures: {
        requests_per_s: r.requests / (r.ms / 1000),
        contract_breaks: r.failures.length,
        health_after: r.health,
        ...Object.fromEntries(statuses.map((s) => [`answers_${s}`, totals[s]!])),
        select_1_ms: c.selectOne,
        first_run_unchecked_ms: c.systemFirst,
        first_run_checked_ms: c.tenantFirst,
        repeat_unchecked_ms: c.systemRepeat,
        repeat_checked_ms: c.tenantRepeat,
      },
      ratios: {
        first_run_checked_vs_unchecked: c.tenantFirst / c.systemFirst,
        repeat_checked_vs_unchecked: c.tenantRepeat / c.systemRepeat,
      },
      notes: [
        'first run: a new SQL text each time (the EXPLAIN AST round trip, then the query); repeat: one text again and again (the cached verdict).',
        'The same texts run on the system handle without the check are the baseline, in the same process and run.',
      ],
      sections: [table],
    }
  },
}
