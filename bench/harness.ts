import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ClickHouseHandle } from '../core/clickhouse.js'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import { openTestEngine } from '../test/engine.js'

/**
 * Benchmarks measure speed as ratios against a baseline taken in the same process and run: the
 * machines are noisy, so an absolute figure alone says little.
 */
export interface BenchContext {
  db: Db
  handle: ClickHouseHandle
  log: Logger
  dataDir: string
  /** Options from the command line, `--set key=value`. */
  args: Record<string, string>
}

export interface BenchResult {
  /** Measured figures: name -> number (with the unit in the name, e.g. rows_per_s). */
  figures: Record<string, number>
  /** Ratios of figures against the baseline figure of the same run. */
  ratios?: Record<string, number>
  /** Parameters the run used (rows, customers ...). */
  params?: Record<string, number | string>
  notes?: string[]
  /** Further Markdown (tables) appended to the .md after the figures. */
  sections?: string[]
}

export interface BenchScenario {
  name: string
  description: string
  run(ctx: BenchContext): Promise<BenchResult>
}

export const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results')

/** A fresh migrated embedded engine for one scenario (the same one test files get). */
export async function openBenchEngine(): Promise<{ ctx: Omit<BenchContext, 'args'>; close(): Promise<void> }> {
  const e = await openTestEngine({ logLevel: 'warn' })
  // Scenarios drive pipeline work (generation, runs, builds, targeting) straight through this Db:
  // the pipeline lane, whose memory limit is the one such work gets in the server.
  return { ctx: { db: e.db.lane('pipeline'), handle: e.handle, log: e.log, dataDir: e.dataDir }, close: () => e.close() }
}

export function writeResult(s: BenchScenario, r: BenchResult, startedAt: Date, seconds: number): { json: string; md: string } {
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const doc = {
    scenario: s.name,
    description: s.description,
    startedAt: startedAt.toISOString(),
    wallSeconds: Number(seconds.toFixed(2)),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    ...r,
  }
  const json = path.join(RESULTS_DIR, `${s.name}.json`)
  fs.writeFileSync(json, JSON.stringify(doc, null, 2) + '\n')
  const fmt = (v: number) => (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : String(Number(v.toPrecision(4))))
  const lines = [
    `# Benchmark: ${s.name}`,
    '',
    s.description,
    '',
    `Run ${doc.startedAt} on ${doc.machine.cpus} cores (${doc.machine.cpuModel}), ${doc.machine.memGiB} GiB, Node ${doc.machine.node}; ${doc.wallSeconds} s wall.`,
    '',
    ...(r.params ? ['| parameter | value |', '| --- | --- |', ...Object.entries(r.params).map(([k, v]) => `| ${k} | ${v} |`), ''] : []),
    '| figure | value |',
    '| --- | --- |',
    ...Object.entries(r.figures).map(([k, v]) => `| ${k} | ${fmt(v)} |`),
    '',
    ...(r.ratios ? ['| ratio | value |', '| --- | --- |', ...Object.entries(r.ratios).map(([k, v]) => `| ${k} | ${v.toFixed(3)} |`), ''] : []),
    ...(r.notes?.length ? ['Notes:', '', ...r.notes.map((n) => `- ${n}`), ''] : []),
    ...(r.sections ?? []),
  ]
  const md = path.join(RESULTS_DIR, `${s.name}.md`)
  fs.writeFileSync(md, lines.join('\n'))
  return { json, md }
}
