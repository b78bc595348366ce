import { mainThreadProfile, summarizeProfile, type ProfileGroup } from '../cpu-profile.js'

/**
 * What a layout's main-thread time goes to, by the code it runs (innermost frame first): the
 * rest is HTTP parsing, the framework and its hooks, and the query's validation.
 */
const LAYOUT_GROUPS: ProfileGroup[] = [
  { name: 'sending', match: (fn) => fn === 'writev' || fn === 'writeBuffer' || fn === 'writeUtf8String' || fn === 'writeLatin1String' },
  { name: 'gc', match: (fn) => fn === '(garbage collector)' },
  { name: 'ranking', match: (_fn, file) => /layout\.(rank|memo|explain)|snapshot\.conditions/.test(file) },
  { name: 'rendering', match: (_fn, file) => file.includes('layout.render') },
  { name: 'digest_and_draws', match: (_fn, file) => /core\/holdout|recommend\/experiments\./.test(file) },
  { name: 'exposures', match: (_fn, file) => file.includes('exposure.') },
  { name: 'authentication', match: (_fn, file) => /tenants\/(auth|keys\.service)/.test(file) },
  { name: 'layout_service', match: (_fn, file) => /layout\.service|recommend\/personalization|model\.snapshot/.test(file) },
]

/** Shares of the one process's busy main-thread time over its layout turns, by group; undefined when no profile was written. */
export function layoutProfile(dir: string, pid: number, stretches: readonly [number, number][]): { busyShare: number; shares: Record<string, number> } | undefined {
  const file = mainThreadProfile(dir, pid)
  if (!file) return undefined
  const s = summarizeProfile(file, stretches, LAYOUT_GROUPS)
  const busy = s.totalMs - s.idleMs
  return { busyShare: busy / s.totalMs, shares: Object.fromEntries(Object.entries(s.groups).map(([k, v]) => [k, v / busy])) }
}
