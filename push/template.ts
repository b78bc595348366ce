import type { ParamBinder } from '../core/params.js'

/**
 * Message templates: text with `{{field}}` or `{{field|fallback}}` placeholders over an
 * allow-list of fields, nothing else (no expressions, no code, no nesting). A template is parsed
 * into parts once, when a campaign is saved; targeting compiles the parts into a ClickHouse
 * `concat` whose literal pieces are bound parameters and whose fields are SQL from code, so
 * a million messages are filled inside the engine and no template text ever becomes SQL.
 *
 * A field without a value and without a fallback leaves the message unfilled: targeting then
 * suppresses that customer with the reason `missing_field` rather than send "due on ." text.
 */

export type TemplatePart = { text: string } | { field: string; fallback?: string }

/** The fields a template may name, besides `tag.<name>` (a tag value of the customer). */
export const TEMPLATE_FIELDS = {
  name: 'the masked display name (张*)',
  today: 'the local date of the occurrence (YYYY-MM-DD)',
  'loan.due_date': 'due date of the next unpaid loan installment',
  'loan.amount': 'amount still due of that installment (CNY, two decimals)',
  'bill.due_date': 'due date of the next unpaid bill',
  'bill.amount': 'amount of that bill (CNY, two decimals)',
  'bill.biller': 'who the bill is from (electricity, water ...), in the message language',
  'product.name': 'the opening product of a product_opening trigger, in the message language',
  'product.opening_date': 'the date that product opens',
  'product.rate': 'its annual rate in per cent',
} as const
export type StaticField = keyof typeof TEMPLATE_FIELDS

export const TAG_FIELD = /^tag\.([a-z][a-z0-9_]{1,62})$/
const TOKEN = /\{\{([^{}]*)\}\}/g
const FIELD_NAME = /^[a-z][a-z0-9_.]{0,80}$/
const MAX_FALLBACK = 100
const MAX_PLACEHOLDERS = 20

export interface TemplateIssue {
  /** Character offset in the text. */
  offset: number
  message: string
}

// Own names only: `in` would also find `constructor`, `toString`... on the object's prototype.
export const isKnownField = (f: string): boolean => Object.hasOwn(TEMPLATE_FIELDS, f) || TAG_FIELD.test(f)

/** Parses a template; issues name the offset of each problem. */
export function parseTemplate(text: string): { parts: TemplatePart[]; issues: TemplateIssue[] } {
  const parts: TemplatePart[] = []
  const issues: TemplateIssue[] = []
  let last = 0
  const literal = (s: string, at: number) => {
    const stray = s.search(/\{\{|\}\}/)
    if (stray >= 0) issues.push({ offset: at + stray, message: 'unbalanced {{ or }}' })
    if (s) parts.push({ text: s })
  }
  for (const m of text.matchAll(TOKEN)) {
    literal(text.slice(last, m.index), last)
    last = m.index + m[0].length
    const inner = m[1]!
    const bar = inner.indexOf('|')
    const field = (bar === -1 ? inner : inner.slice(0, bar)).trim()
    const fallback = bar === -1 ? undefined : inner.slice(bar + 1).trim()
    if (!FIELD_NAME.test(field) || !isKnownField(field)) {
      issues.push({ offset: m.index, message: `unknown field ${JSON.stringify(field)}; use one of ${Object.keys(TEMPLATE_FIELDS).join(', ')} or tag.<name>` })
      continue
    }
    if (fallback !== undefined && (fallback.length > MAX_FALLBACK || fallback.includes('|'))) {
      issues.push({ offset: m.index, message: `a fallback is plain text of at most ${MAX_FALLBACK} characters` })
      continue
    }
    parts.push(fallback === undefined ? { field } : { field, fallback })
  }
  literal(text.slice(last), last)
  if (parts.filter((p) => 'field' in p).length > MAX_PLACEHOLDERS) issues.push({ offset: 0, message: `at most ${MAX_PLACEHOLDERS} placeholders` })
  return { parts, issues }
}

export function fieldsOf(parts: readonly TemplatePart[]): string[] {
  return [...new Set(parts.flatMap((p) => ('field' in p ? [p.field] : [])))]
}

/** Fills a template in JS (previews, tests); null when a field without fallback has no value. */
export function renderTemplate(parts: readonly TemplatePart[], values: Readonly<Record<string, string | null | undefined>>): string | null {
  let out = ''
  for (const p of parts) {
    if ('text' in p) out += p.text
    else {
      const v = values[p.field]
      if (v === undefined || v === null || v === '') {
        if (p.fallback === undefined) return null
        out += p.fallback
      } else out += v
    }
  }
  return out
}

/**
 * The SQL expression of a template: Nullable(String), NULL when a field without fallback is
 * NULL. `field` gives the SQL of a field (from code), NULL when the customer has no value.
 */
export function templateSql(parts: readonly TemplatePart[], b: ParamBinder, field: (name: string) => string): string {
  const pieces = parts.map((p) => {
    if ('text' in p) return b.str(p.text)
    const x = `nullIf(${field(p.field)}, '')`
    return p.fallback === undefined ? x : `coalesce(${x}, ${b.str(p.fallback)})`
  })
  if (pieces.length === 0) return b.str('')
  return pieces.length === 1 ? pieces[0]! : `concat(${pieces.join(', ')})`
}
