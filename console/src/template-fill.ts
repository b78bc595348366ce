import type { CustomerView } from './types.js'

/**
 * A message filled for one sample customer, in the browser. The push API fills templates only
 * when targeting runs (inside ClickHouse, push/targeting.fields.ts) and has no preview route, so
 * the campaign screen fills what it can from GET /v1/customers/:no (name, tags, today) and marks
 * the rest (loan, bill and product fields come from stock data only targeting reads). After a
 * "run now", the targets list shows the messages as the server filled them.
 */

export interface Filled {
  text: string
  /** Fields with no value here and no fallback: shown as ⟨field⟩. */
  pending: string[]
}

const TOKEN = /\{\{([^{}]*)\}\}/g

export function fieldValues(c: CustomerView, today: string): Record<string, string> {
  const out: Record<string, string> = { today }
  if (c.profile) out.name = c.profile.nameMasked
  for (const t of c.tags) out[`tag.${t.name}`] = Array.isArray(t.value) ? t.value.join(',') : String(t.value)
  return out
}

export function fill(template: string, values: Record<string, string>): Filled {
  const pending: string[] = []
  const text = template.replace(TOKEN, (_m, inner: string) => {
    const bar = inner.indexOf('|')
    const field = (bar === -1 ? inner : inner.slice(0, bar)).trim()
    const v = values[field]
    if (v !== undefined && v !== '') return v
    if (bar !== -1) return inner.slice(bar + 1)
    pending.push(field)
    return `⟨${field}⟩`
  })
  return { text, pending }
}

/** Elder customers get the elder variant when the campaign has one, as targeting decides. */
export function isElder(c: CustomerView): boolean {
  return c.tags.some((t) => t.name === 'elder' && t.value === true)
}
