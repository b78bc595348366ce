import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestEngine, type TestEngine } from '../test/engine.js'

/**
 * The engine's configuration reaches the engine: the dedup index's RocksDB files are written
 * with a Bloom filter (core/engine-config.ts), which RocksDB records in the OPTIONS file it
 * keeps beside each table's files.
 */

let e: TestEngine
beforeAll(async () => {
  e = await openTestEngine()
}, 60_000)
afterAll(async () => e?.close())

function optionsText(dir: string): string {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('OPTIONS-'))
    .sort()
  return files.length ? fs.readFileSync(path.join(dir, files[files.length - 1]!), 'utf8') : ''
}

describe('the embedded engine configuration', () => {
  it('gives the dedup index a Bloom filter in every RocksDB file', async () => {
    const [t] = await e.db.system.query(
      `SELECT data_paths FROM system.tables WHERE database = currentDatabase() AND name = 'ingest_dedup_digests'`,
      {},
      z.object({ data_paths: z.array(z.string()) }),
    )
    const dir = t!.data_paths.map((p) => (path.isAbsolute(p) ? p : path.join(e.dataDir, 'clickhouse', p))).find((p) => fs.existsSync(p))
    expect(dir, `rocksdb directory of ${JSON.stringify(t!.data_paths)}`).toBeDefined()
    const text = optionsText(dir!)
    expect(text).toMatch(/\[TableOptions\/BlockBasedTable "default"\]/)
    expect(text).toMatch(/^\s*filter_policy=bloomfilter:10/m)
  })
})
