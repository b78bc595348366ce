import fs from 'node:fs'

/**
 * Samples this process's memory on a timer, so a phase's peak is known even when the process's
 * high-water mark (VmHWM, maxRSS) was set by an earlier phase. The embedded engine's queries run
 * off the JavaScript thread, so the timer keeps firing while they work.
 *
 * Two figures per sample: the resident set (Node and the embedded engine together) and what
 * JavaScript holds (V8 heap, plus buffers outside it). The engine's share is the difference, less
 * the engine library's resident code (the `base` sample taken before any work).
 */
export interface MemoryPeak {
  rssMb: number
  jsMb: number
}

export interface MemorySampler {
  /** Ends the current phase and starts `name`; returns the peak of the phase that ended. */
  phase(name: string): MemoryPeak
  /** Peaks by phase so far (the current one included). */
  peaks(): Record<string, MemoryPeak>
  /** The first sample, taken when the sampler started. */
  base: MemoryPeak
  now(): MemoryPeak
  stop(): void
}

function rssMb(): number {
  // /proc is cheaper than process.memoryUsage(), which walks the V8 heap spaces.
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) / 1024 : process.memoryUsage.rss() / 1024 ** 2
}

function jsMb(): number {
  const u = process.memoryUsage()
  return (u.heapUsed + u.external) / 1024 ** 2
}

export function createMemorySampler(intervalMs = 250): MemorySampler {
  const sample = (): MemoryPeak => ({ rssMb: rssMb(), jsMb: jsMb() })
  const base = sample()
  const peaks = new Map<string, MemoryPeak>()
  let current = 'start'
  peaks.set(current, { ...base })
  const tick = () => {
    const s = sample()
    const p = peaks.get(current)!
    p.rssMb = Math.max(p.rssMb, s.rssMb)
    p.jsMb = Math.max(p.jsMb, s.jsMb)
  }
  // Unreferenced: the sampler alone never keeps the process alive.
  const timer = setInterval(tick, intervalMs)
  timer.unref()
  return {
    base,
    phase(name) {
      tick()
      const ended = peaks.get(current)!
      current = name
      peaks.set(name, sample())
      return { ...ended }
    },
    peaks: () => Object.fromEntries([...peaks].map(([k, v]) => [k, { ...v }])),
    now: sample,
    stop: () => clearInterval(timer),
  }
}
