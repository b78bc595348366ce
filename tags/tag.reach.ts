import { eventMeasures } from './tag.measures.js'
import type { TagDefinition } from './tag.schema.js'

/**
 * How many local days of events each window and lifecycle tag of `defs` reads back (its window,
 * offset included); other tags read no events. Compared with the bank's events retention, it
 * says which tags count days whose events are gone (tenants/privacy.schema.ts retentionWarnings).
 */
export function windowReach(defs: readonly TagDefinition[]): { tag: string; days: number }[] {
  return defs.filter((d) => d.rule.kind === 'window' || d.rule.kind === 'lifecycle').map((d) => ({ tag: d.name, days: eventMeasures([d]).span }))
}
