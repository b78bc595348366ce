import { hasValueLabel, t, valueLabel } from '../i18n.js'
import type { GroupNode } from '../rule-model.js'
import type { Purpose, Tag } from '../types.js'

/** What the segment builder computes from the catalogue and a preview: the breakdown's tags and rows, the tags a rule names. */

/** Tags the purpose may use that break customers into a few groups (not numbers or dates). */
export function breakdownTags(tags: Tag[], purpose: Purpose): Tag[] {
  return tags.filter((d) => d.type !== 'number' && d.type !== 'date' && d.purpose.includes(purpose))
}

/**
 * The breakdown rows in words, and the members the rows do not hold: a yes/no tag keeps only
 * its "yes" customers, so the rest are its "no"; other tags' rest have no value.
 */
export function withRemainder(def: Tag, rows: { value: string; customers: number }[], members: number): { label: string; customers: number }[] {
  const out = rows.map((r) => ({ label: hasValueLabel(def.name, r.value) ? valueLabel(def.name, r.value) : r.value, customers: r.customers }))
  const rest = members - rows.reduce((a, r) => a + r.customers, 0)
  if (rest > 0 && def.type !== 'string_list') out.push({ label: def.type === 'boolean' && !rows.some((r) => r.value === 'false') ? t('no') : t('noValue'), customers: rest })
  return out
}

export function tagNamesIn(n: GroupNode): string[] {
  return n.children.flatMap((c) => (c.kind === 'group' ? tagNamesIn(c) : c.kind === 'tag' && c.tag ? [c.tag] : []))
}

