import { createClient, type ClickHouseClient } from '@clickhouse/client'

/**
 * Watches the embedded engine's memory from a second connection on the same data directory
 * (queries on one connection run one at a time, so a watcher on the working connection would
 * only see the gaps between queries). Each second: the engine's tracked memory and, per running
 * query, its memory, keeping the largest per phase. The embedded engine has no query_log, so
 * this is how a phase's memory is pinned on the statement that used it.
 */
export interface EnginePeak {
  trackedMb: number
  /** The statements that used most memory in the phase, largest first: text prefix and MB. */
  queries: { query: string; mb: number }[]
}

export interface EngineMonitor {
  phase(name: string): void
  peaks(): Record<string, EnginePeak>
  close(): Promise<void>
}

export async function openEngineMonitor(dataDir: string, intervalMs = 1000): Promise<EngineMonitor> {
  const { createChdbConnection } = await import('chdb/connection')
  const client: ClickHouseClient = createClient({ connection: createChdbConnection({ path: `${dataDir}/clickhouse` }) } as Parameters<typeof createClient>[0])
  const peaks = new Map<string, { trackedMb: number; queries: Map<string, number> }>()
  let current = 'start'
  peaks.set(current, { trackedMb: 0, queries: new Map() })
  let busy = false
  const tick = async () => {
    if (busy) return
    busy = true
    try {
      const rs = await client.query({
        query: `SELECT 'tracked' AS q, toString(value) AS b FROM system.metrics WHERE metric = 'MemoryTracking'
                UNION ALL SELECT substring(replaceRegexpAll(query, '\\s+', ' '), 1, 90) AS q, toString(peak_memory_usage) AS b FROM system.processes
                WHERE query NOT LIKE '%system.processes%'`,
        format: 'JSONEachRow',
      })
      const rows = (await rs.json()) as { q: string; b: string }[]
      const p = peaks.get(current)!
      for (const r of rows) {
        const mb = Number(r.b) / 1024 ** 2
        if (r.q === 'tracked') p.trackedMb = Math.max(p.trackedMb, mb)
        else p.queries.set(r.q, Math.max(p.queries.get(r.q) ?? 0, mb))
      }
    } catch {
      // A watcher's failed sample is a gap in the figures, not a failure of the run.
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => void tick(), intervalMs)
  timer.unref()
  return {
    phase(name) {
      current = name
      if (!peaks.has(name)) peaks.set(name, { trackedMb: 0, queries: new Map() })
    },
    peaks: () =>
      Object.fromEntries(
        [...peaks].map(([k, v]) => [
          k,
          { trackedMb: v.trackedMb, queries: [...v.queries].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([query, mb]) => ({ query, mb })) },
        ]),
      ),
    async close() {
      clearInterval(timer)
      while (busy) await new Promise((r) => setTimeout(r, 50))
      await client.close()
    },
  }
}

/** The results file's section of engine memory per phase (the phases `start` and `between` left out). */
export function monitorSection(peaks: Record<string, EnginePeak>): string {
  const rows = Object.entries(peaks)
    .filter(([k]) => k !== 'start' && k !== 'between')
    .map(([k, v]) => `| ${k} | ${v.trackedMb.toFixed(0)} | ${v.queries.map((q) => `${q.mb.toFixed(0)} MB: \`${q.query.replaceAll('|', '/').replaceAll('`', "'")}\``).join('<br>')} |`)
  return [
    '## Engine memory during each phase (sampled each second from a second connection)\n',
    '| phase | peak MemoryTracking MB | statements with the largest peak memory |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n')
}
