import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createClickHouse, type ClickHouseHandle } from '../core/clickhouse.js'
import { loadConfig } from '../core/config.js'
import { createLaneDb, type Db } from '../core/db.js'
import { createLogger, type Logger } from '../core/log.js'
import { createMigrator } from '../sql/migrate.js'

/**
 * A real embedded ClickHouse in a temporary directory, migrated: one per test file, and one per
 * benchmark scenario. For a test file: its own temporary data directory (libchdb binds
 * one directory per process, and vitest runs each file in its own worker process), migrated.
 */
export interface TestEngine {
  db: Db
  handle: ClickHouseHandle
  log: Logger
  dataDir: string
  close(): Promise<void>
}

export async function openTestEngine(opts: { migrate?: boolean; logLevel?: string; env?: Record<string, string> } = {}): Promise<TestEngine> {
  // The unit lane runs files side by side in worker threads of one process, where two engines
  // would share one libchdb (vitest.config.ts sets this for that lane only).
  if (process.env.QIANMIAN_TEST_LANE === 'unit') {
    throw new Error('this test file opens an embedded engine, but it runs in the unit lane: move it from UNIT_FILES (test/test-lanes.ts) to the engine lane')
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-test-'))
  const config = loadConfig({ ...opts.env, QIANMIAN_DATA_DIR: dataDir })
  const log = createLogger({ level: opts.logLevel ?? process.env.TEST_LOG_LEVEL ?? 'silent' })
  const handle = await createClickHouse(config)
  const db = createLaneDb(handle)
  if (opts.migrate !== false) await createMigrator({ system: db.system, log }).migrate()
  return {
    db,
    handle,
    log,
    dataDir,
    async close() {
      await handle.close()
      fs.rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
