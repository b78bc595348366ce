import fs from 'node:fs'
import path from 'node:path'

/**
 * Where a serving thread's time went, from the V8 CPU profile it wrote (`node --cpu-prof`),
 * over chosen stretches of the run only (the load's turns, not the start or the pauses).
 *
 * Written here rather than taken from a profile viewer: the benchmark needs a few named shares
 * in its results file, and the format is a plain tree of call frames with sample times. Sample
 * times are microseconds of the monotonic clock, the one `process.hrtime` reads in any process on
 * the host, so the load generator's own clock delimits the stretches.
 */

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

/** A share of the thread's time: a sample belongs to the first group any frame of its stack matches, from the innermost frame out. */
export interface ProfileGroup {
  name: string
  /** Matches a frame by its function name and the file (the end of its URL). */
  match: (functionName: string, file: string) => boolean
}

export interface ProfileSummary {
  /** The profiled time inside the stretches, ms. */
  totalMs: number
  /** Of it, the thread waiting for work (V8's `(idle)`), ms. */
  idleMs: number
  /** Per group, ms; `other` for what no group matched (neither idle). */
  groups: Record<string, number>
}

/** The `monotonic microseconds` a profile's sample times are on, now (for the stretches). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

/** The main thread's profile of a process (`CPU.<date>.<time>.<pid>.0.<n>.cpuprofile`) in `dir`, if written. */
export function mainThreadProfile(dir: string, pid: number): string | undefined {
  const name = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && f.includes(`.${pid}.0.`))
  return name && path.join(dir, name)
}

export function summarizeProfile(file: string, stretches: readonly (readonly [number, number])[], groups: readonly ProfileGroup[]): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  // The group of each node, from the innermost frame out, resolved once per node.
  const groupOf = new Map<number, string>()
  const resolve = (id: number): string => {
    const hit = groupOf.get(id)
    if (hit !== undefined) return hit
    const n = byId.get(id)!
    const file = n.callFrame.url.split('/').slice(-2).join('/')
    const own = n.callFrame.functionName === '(idle)' ? 'idle' : groups.find((g) => g.match(n.callFrame.functionName, file))?.name
    const up = parent.get(id)
    const g = own ?? (up === undefined ? 'other' : resolve(up))
    groupOf.set(id, g)
    return g
  }
  const inside = (t: number) => stretches.some(([from, to]) => t >= from && t < to)
  const totals: Record<string, number> = Object.fromEntries([...groups.map((g) => [g.name, 0]), ['other', 0], ['idle', 0]])
  let total = 0
  // A sample's time is the delta to the next sample (the time the thread spent where it was seen).
  let t = p.startTime
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    const spent = p.timeDeltas[i + 1] ?? 0
    if (!inside(t)) continue
    total += spent
    totals[resolve(p.samples[i]!)]! += spent
  }
  const { idle, ...rest } = totals
  return { totalMs: total / 1000, idleMs: (idle ?? 0) / 1000, groups: Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v / 1000])) }
}
