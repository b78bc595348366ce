import fs from 'node:fs'

/** What the benchmarks read of processes on this host from /proc: CPU time, children, memory. */

/**
 * CPU time (user and system) of a process's main thread, in microseconds, from /proc: the thread
 * that parses, answers and writes every request. The whole process's would count the embedded
 * engine's background threads (merges after the seeding), which serve no request.
 */
export function cpuMicros(pid: number): { user: number; system: number } {
  const fields = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return { user: (Number(fields[11]) * 1e6) / CLOCK_TICKS, system: (Number(fields[12]) * 1e6) / CLOCK_TICKS }
}
// USER_HZ: 100 on every Linux this runs on (sysconf is not reachable from Node).
const CLOCK_TICKS = 100

/** The main threads' CPU time of several processes, summed. */
export function cpuOf(pids: readonly number[]): { user: number; system: number } {
  return pids.map(cpuMicros).reduce((a, b) => ({ user: a.user + b.user, system: a.system + b.system }), { user: 0, system: 0 })
}

/** A process's children (the API processes of an engine process started with QIANMIAN_API_PROCESSES). */
export function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
}

/** Whole-process CPU time (every thread), in microseconds. */
export function processCpuMicros(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS
}

/**
 * Waits until idle processes use under a tenth of a core over 2 s (the engine's merges done),
 * at most 180 s; the seconds waited.
 */
export async function settle(pids: readonly number[]): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    const c0 = pids.reduce((t, p) => t + processCpuMicros(p), 0)
    await new Promise((r) => setTimeout(r, 2000))
    const used = (pids.reduce((t, p) => t + processCpuMicros(p), 0) - c0) / 2e6
    const waited = (performance.now() - t0) / 1000
    if (used < 0.1 || waited > 180) return waited
  }
}

export function rssOf(pid: number): { rssMb: number; hwmMb: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN)
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 }
}
