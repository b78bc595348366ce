import { defineConfig } from 'vitest/config'
import { laneGlobs, parallelWorkers, type Lane } from './test/test-lanes.js'

// The test lanes (test/test-lanes.ts says which file runs where and why). `npm test` runs them
// all: unit and engine side by side on every core, then kafka, durability and browser one file
// at a time; `npm run test:<lane>` runs one.
const workers = parallelWorkers()

function lane(name: Lane, opts: { pool: 'threads' | 'forks'; maxWorkers: number; groupOrder: number; env?: Record<string, string> }) {
  return {
    test: {
      name,
      ...laneGlobs(name),
      pool: opts.pool,
      // A fresh worker per file; with forks that is a process per file, which the engine lanes need
      // (the embedded engine binds one data directory per process).
      isolate: true,
      maxWorkers: opts.maxWorkers,
      // Unit and engine share group 0 (their files fill the same workers); the serial lanes follow in turn.
      sequence: { groupOrder: opts.groupOrder },
      testTimeout: 60_000,
      hookTimeout: 120_000,
      ...(opts.env ? { env: opts.env } : {}),
    },
  }
}

export default defineConfig({
  test: {
    projects: [
      // QIANMIAN_TEST_LANE makes openTestEngine refuse in the unit lane (test/engine.ts).
      lane('unit', { pool: 'threads', maxWorkers: workers, groupOrder: 0, env: { QIANMIAN_TEST_LANE: 'unit' } }),
      lane('engine', { pool: 'forks', maxWorkers: workers, groupOrder: 0 }),
      lane('kafka', { pool: 'forks', maxWorkers: 1, groupOrder: 1 }),
      lane('durability', { pool: 'forks', maxWorkers: 1, groupOrder: 2 }),
      lane('browser', { pool: 'forks', maxWorkers: 1, groupOrder: 3 }),
    ],
  },
})
