import os from 'node:os'

/**
 * The test lanes: each *.test.ts file runs in exactly one vitest project, chosen by what it needs
 * (vitest.config.ts builds the projects from this file; test/test-lanes.test.ts proves that every
 * test file lands in exactly one of them).
 *
 * - `unit`: opens no engine and needs no service; worker threads, several at once.
 * - `engine`: opens an embedded engine (libchdb binds one data directory per process), so one
 *   file per forked process, as many processes at once as the machine has cores. Every file that
 *   is in no other lane runs here: a new test file is safe before anyone classifies it.
 * - `kafka`: needs a broker (`KAFKA_BROKERS`); `durability`: kills, crashes or interrupts a
 *   server and restarts it; `browser`: drives chromium. One file at a time: they measure timing,
 *   restart brokers or share a console build.
 *
 * A file that needs a broker is in `kafka` even when it also crashes something, so
 * `npm run test:kafka` is the one lane that needs the broker.
 */

export const LANES = ['unit', 'engine', 'kafka', 'durability', 'browser'] as const
export type Lane = (typeof LANES)[number]

/** Never test files: dependencies, build output, data and broker directories. */
export const NOT_TESTS = ['node_modules/**', 'dist/**', 'console/dist/**', '.qianmian/**', '.tmp/**', '.kafka/**']

/**
 * Files (paths, or globs of folders whose tests are all pure) that open no engine, directly or
 * through a fixture (`openTestEngine`, `openTestApp`, `openPush`, `setupFixture`). In this lane
 * `openTestEngine` refuses to run, so a file listed here by mistake fails saying so.
 */
export const UNIT_FILES = [
  'bench/cpu-profile.test.ts',
  'bench/open-loop.test.ts',
  'cli/tags.cli.test.ts',
  // The console's own logic, without a server or a browser.
  'console/src/**/*.test.ts',
  'core/cluster-broadcast.test.ts',
  'core/cluster-locks.test.ts',
  'core/config.test.ts',
  'core/log.test.ts',
  'core/pii.scan.test.ts',
  'core/pii.test.ts',
  'core/reply-batch.test.ts',
  'core/system-handle.test.ts',
  'core/time.test.ts',
  'demo/demo.dates.test.ts',
  'ingest/event-size.test.ts',
  'ingest/flush-policy.test.ts',
  'ingest/import/import.fields.test.ts',
  'ingest/ingest.pii.test.ts',
  'ingest/normalize.pii.test.ts',
  'ingest/normalize.test.ts',
  'ingest/rate-limit.share.test.ts',
  'ingest/segment.fast.test.ts',
  'ingest/well-formed.test.ts',
  'kafka/kafka.assignment.test.ts',
  'kafka/kafka.message.test.ts',
  'kafka/offsets.test.ts',
  'kafka/send-limits.test.ts',
  'kafka/serial-send.test.ts',
  'kafka/tenant-groups.test.ts',
  'privacy/export.coverage.test.ts',
  'push/lease.remote.test.ts',
  'push/schedule.test.ts',
  'push/template.test.ts',
  // Offline evaluation of the layout model, on files and in memory.
  'recommend/eval/**/*.test.ts',
  'recommend/layout.rank.test.ts',
  'recommend/layout.reasons.test.ts',
  'recommend/layout.render.test.ts',
  'segments/segment.limits.test.ts',
  'segments/segment.schema.test.ts',
  'server/body-encoding.test.ts',
  'server/console.routes.test.ts',
  'tags/tag.c2guard.test.ts',
  'tags/tag.limits.test.ts',
  'tags/tag.widen.test.ts',
  'test/architecture.test.ts',
  'test/test-lanes.test.ts',
]

/** Files that need `KAFKA_BROKERS` (they skip, saying so, without it). */
export const KAFKA_FILES = [
  'kafka/kafka.crash.test.ts',
  'kafka/kafka.groups.test.ts',
  'kafka/kafka.ingest.test.ts',
  'kafka/kafka.isolation.test.ts',
  'kafka/kafka.rebalance.test.ts',
  'kafka/kafka.size.test.ts',
  'kafka/kafka.smoke.test.ts',
  'push/kafka.publisher.test.ts',
]

/** Files that kill or interrupt a server and check what survives its restart. */
export const DURABILITY_FILES = ['ingest/ingest.durability.test.ts', 'privacy/erasure.resume.test.ts', 'server/cluster.test.ts', 'server/cluster.layouts.test.ts', 'server/cluster.pulls.test.ts', 'server/cluster.locks.test.ts', 'server/cluster.rates.test.ts']

/** Files that drive chromium, by name. */
export const BROWSER_GLOBS = ['**/*.e2e.test.ts', '**/*.browser.test.ts']

/** What each lane's project includes and excludes (as vitest globs, relative to the root). */
export function laneGlobs(lane: Lane): { include: string[]; exclude: string[] } {
  switch (lane) {
    case 'unit':
      return { include: UNIT_FILES, exclude: NOT_TESTS }
    case 'kafka':
      return { include: KAFKA_FILES, exclude: NOT_TESTS }
    case 'durability':
      return { include: DURABILITY_FILES, exclude: NOT_TESTS }
    case 'browser':
      return { include: BROWSER_GLOBS, exclude: NOT_TESTS }
    case 'engine':
      return { include: ['**/*.test.ts'], exclude: [...NOT_TESTS, ...UNIT_FILES, ...KAFKA_FILES, ...DURABILITY_FILES, ...BROWSER_GLOBS] }
  }
}

/**
 * How many files the unit and engine lanes run at once: `TEST_WORKERS` when set, else every
 * core (vitest's own default leaves one core idle, which on two cores is one worker).
 */
export function parallelWorkers(env: NodeJS.ProcessEnv = process.env, cores = os.availableParallelism()): number {
  const raw = env.TEST_WORKERS
  if (raw === undefined || raw === '') return Math.max(1, cores)
  if (!/^[1-9][0-9]*$/.test(raw)) throw new Error(`TEST_WORKERS: expected a positive integer (got "${raw}")`)
  return Number(raw)
}
