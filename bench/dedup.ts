import fs from 'node:fs'
import type { Db } from '../core/db.js'
import { dedupDigests, dedupKey } from '../core/dedup-digest.js'
import { DEDUP_LOOKUP } from '../ingest/dedup-index.js'

/**
 * The dedup question of one flush against an index of a bank's size. The writer asks, per flush,
 * which of its message ids are stored. Asked of ingest_dedup (a MergeTree sorted by tenant and
 * message id, the writer's question until sql/023) it read every granule, since a flush's ids are
 * random; asked of the key index (RocksDB, one read per key: ingest_dedup_digests since sql/024)
 * it reads the flush's keys. The keys' time includes computing the digests, as the writer does.
 */

/** The old form: the MergeTree index, by message id, every tenant at once. */
const SCAN_LOOKUP = 'SELECT tenant_id, message_id FROM ingest_dedup WHERE message_id IN (SELECT arrayJoin({ids:Array(String)}))'

const idOf = (n: number) => `bench-dedup-${n}`
const tenantOf = (n: number) => 1 + (n % 3)

export interface DedupSize {
  ids: number
  /** Flush-sized inserts written after the bulk fill, before this measurement (0: right after it). */
  afterFlushes: number
  /** Median of the rounds, ms for one flush's question. */
  scanMs: number
  keysMs: number
  found: number
}

export interface DedupResult {
  sizes: DedupSize[]
  /** Writing the ids (ingest_dedup and, through its view, the key index), µs per id. */
  writeUsPerId: number
  flush: number
}

/**
 * Fills ingest_dedup (and so the key index) up to each size in `sizes`, then asks a flush's
 * question both ways, `rounds` times: half of the flush's ids stored, half new. Then, as the
 * writer goes on, `flushes` inserts of a flush's ids each, and the question again: an index
 * filled in bulk and measured at once is not the one a running writer leaves (a RocksDB table
 * that took every insert as a file of its own read them all on each lookup).
 */
export async function measureDedup(db: Db, sizes: number[], flush = 5000, rounds = 5, flushes = 200): Promise<DedupResult> {
  let filled = 0
  let writeMs = 0
  const out: DedupSize[] = []
  const fill = async (count: number) => {
    // Rows of 3 tenants, received now (inside the 3-day window the index keeps); a bulk fill is one
    // statement the engine splits into blocks of a million.
    await db.system.command(
      `INSERT INTO ingest_dedup (tenant_id, message_id, received_at, timestamp)
       SELECT 1 + number % 3, concat('bench-dedup-', toString(number)), now64(3), now64(3)
       FROM numbers({from:UInt64}, {count:UInt64})`,
      { from: filled, count },
    )
    filled += count
  }
  const steps = [...sizes.map((size) => ({ size, flushes: 0 })), { size: sizes[sizes.length - 1]! + flush * flushes, flushes }]
  for (const { size, flushes: n } of steps) {
    const t0 = performance.now()
    if (n === 0) await fill(size - filled)
    else for (let f = 0; f < n; f++) await fill(flush)
    if (n === 0) writeMs += performance.now() - t0
    const scan: number[] = []
    const keys: number[] = []
    let found = 0
    for (let r = 0; r < rounds; r++) {
      const picks = Array.from({ length: flush }, (_, i) => (i % 2 ? Math.floor(Math.random() * size) : size + r * flush + i))
      const ids = picks.map(idOf)
      let t = performance.now()
      const a = await db.system.query<{ tenant_id: number; message_id: string }>(SCAN_LOOKUP, { ids })
      scan.push(performance.now() - t)
      t = performance.now()
      const b = await db.system.query<{ tenant_id: number; message_id: string }>(DEDUP_LOOKUP, { digests: dedupDigests(picks.map((n) => dedupKey(tenantOf(n), idOf(n)))) })
      keys.push(performance.now() - t)
      if (a.length !== b.length) throw new Error(`the two dedup lookups disagree: ${a.length} against ${b.length} stored ids`)
      found += b.length
    }
    out.push({ ids: size, afterFlushes: n, scanMs: median(scan), keysMs: median(keys), found: found / rounds })
  }
  return { sizes: out, writeUsPerId: (writeMs * 1000) / sizes[sizes.length - 1]!, flush }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/**
 * CPU time of a process's threads, µs, grouped by what they run: the main thread, other Node
 * threads (worker threads and libuv's pool, where the embedded engine runs a statement), the
 * engine's own pools by their names (merges apart). From /proc, so any process of this machine.
 */
export function threadCpuUs(pid: number): Map<string, number> {
  const out = new Map<string, number>()
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
    } catch {
      continue // the thread ended between the listing and the read
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const us = ((Number(f[11]) + Number(f[12])) * 1e6) / 100 // utime + stime, in clock ticks of 1/100 s
    const group = t === String(pid) ? 'main' : name === 'node' || name.startsWith('libuv') ? 'node_threads' : /^MergeMutate/.test(name) ? 'engine_merges' : 'engine_other'
    out.set(group, (out.get(group) ?? 0) + us)
  }
  return out
}

/** `after - before` per group, per event. */
export function perEvent(before: Map<string, number>, after: Map<string, number>, events: number): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of after) out[k] = (v - (before.get(k) ?? 0)) / events
  return out
}
