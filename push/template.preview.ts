import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { ParamBinder } from '../core/params.js'
import { localDate } from '../core/time.js'
import { visibleTo } from '../tags/tag.catalog.js'
import type { StoredTag } from '../tags/tag.schema.js'
import { messageFieldProblem } from './campaign.check.js'
import { compileMessage, messageFields, texts, type Message } from './campaign.schema.js'
import { planFields } from './targeting.fields.js'
import { ELDER_JOIN, ELDER_TAG, messagePartSql } from './targeting.sql.js'
import { fieldsOf, parseTemplate, TAG_FIELD } from './template.js'

/**
 * A message filled for one customer before any campaign runs, by the SQL targeting fills it
 * with (`planFields` for the fields, `messagePartSql` for the variant and language), so what
 * the console shows is what the customer would get. Nothing is written.
 *
 * Without a customer the fields that come from one are left unfilled (the template's shape,
 * with its fallbacks and today's date). For a key without personal:read, C2 values (the masked
 * name, amounts, values of tags above low sensitivity: `GET /v1/data-catalogue`) are replaced
 * by MASK: whether a field has a value is still told, not the value. That is why a tag a
 * campaign could not carry (unknown, or of high sensitivity) is refused, for every key: for a
 * boolean risk flag, being there is the value.
 */

export const MASK = '***'
/** Template fields whose values are C2 in the catalogue (customers.name_masked, amounts). */
const C2_FIELDS = new Set(['name', 'loan.amount', 'bill.amount'])

export interface TextPair {
  title: string | null
  /** null: a field without fallback has no value; targeting would leave the customer out (missing_field). */
  body: string | null
}
export interface TemplatePreview {
  customerNo: string | null
  localDate: string
  elder: boolean
  language: 'zh' | 'en' | null
  texts: { zh: TextPair; en: TextPair }
  fields: { field: string; value: string | null; masked: boolean }[]
}

/** The coded 400 for a message whose templates do not parse, naming each text's path in the request body. */
export function checkTemplates(m: Message): void {
  const issues: { field: string; message: string }[] = []
  for (const { path, value } of texts(m)) {
    const t = parseTemplate(value)
    for (const i of t.issues) issues.push({ field: ['body', 'message', ...path].join('.'), message: `at ${i.offset}: ${i.message}` })
    if (fieldsOf(t.parts).some((f) => f.startsWith('product.'))) {
      issues.push({ field: ['body', 'message', ...path].join('.'), message: 'product fields are filled only when a product_opening trigger finds a product' })
    }
  }
  if (issues.length) throw new AppError('VALIDATION_FAILED', 'The message is invalid.', { issues })
}

/**
 * The coded 400 for tag fields a campaign save refuses whatever its purpose (campaign.check.ts),
 * naming each text's path. The tags are those the key may use (`withSensitive`: personal:read):
 * to any other key a high tag is unknown, refused alike, so the answer does not tell it exists.
 */
export function checkTagFields(m: Message, tags: readonly StoredTag[], withSensitive: boolean): void {
  const defs = new Map(tags.filter((t) => visibleTo(withSensitive, t.sensitivity)).map((t) => [t.name, t]))
  const issues: { field: string; message: string }[] = []
  for (const { path, value } of texts(m)) {
    for (const f of fieldsOf(parseTemplate(value).parts)) {
      const problem = messageFieldProblem(f, defs)
      if (problem) issues.push({ field: ['body', 'message', ...path].join('.'), message: problem })
    }
  }
  if (issues.length) throw new AppError('VALIDATION_FAILED', `${issues[0]!.field}: ${issues[0]!.message}`, { issues })
}

const row = z.object({
  en: z.coerce.number(),
  elder: z.coerce.number(),
  language: z.string(),
  title: z.string().nullable(),
  body: z.string().nullable(),
  values: z.array(z.string().nullable()),
})

export async function previewTemplate(
  db: TenantDb,
  o: { message: Message; customerKey: number | null; customerNo: string | null; timeZone: string; now: Date; tags: readonly StoredTag[]; seesPersonal: boolean },
): Promise<TemplatePreview> {
  checkTemplates(o.message)
  // Personal data and high-sensitivity tags go together (tenants/auth.ts, seesSensitiveTags).
  checkTagFields(o.message, o.tags, o.seesPersonal)
  const b = new ParamBinder('q')
  const msg = compileMessage(o.message)
  const names = messageFields(o.message)
  // `a` is the audience row targeting would have for this customer on today's occurrence, once
  // per message language (a.en), so both languages come from one statement.
  const plan = planFields(names, b, { en: 'a.en = 1' })
  const sensitivity = new Map(o.tags.map((t) => [t.name, t.sensitivity]))
  const masked = (f: string) => {
    if (o.seesPersonal) return false
    if (C2_FIELDS.has(f)) return true
    const tag = TAG_FIELD.exec(f)?.[1]
    return tag !== undefined && (sensitivity.get(tag) ?? 'low') !== 'low'
  }
  // Masking inside the statement keeps "no value" apart from "a value you may not see".
  const expr = (f: string) => (masked(f) ? `if(isNull(${plan.expr(f)}), NULL, ${b.str(MASK)})` : plan.expr(f))
  const when = { en: 'a.en = 1', elder: msg.elder ? 'el.elder = 1' : '0' }
  const today = localDate(o.now, o.timeZone)
  const sql = `SELECT a.en AS en, ${msg.elder ? 'el.elder' : '0'} AS elder, c.language AS language,
      ${msg.standard.zh.title || msg.elder?.zh.title ? messagePartSql(msg, 'title', b, expr, when) : 'NULL'} AS title,
      ${messagePartSql(msg, 'body', b, expr, when)} AS body,
      [${names.map((f) => `CAST(${expr(f)} AS Nullable(String))`).join(', ')}]::Array(Nullable(String)) AS values
    FROM (SELECT {key:UInt32} AS customer_key, {today:Date} AS occ_date, arrayJoin([0, 1]) AS en) AS a
    LEFT JOIN (SELECT customer_key, language, name_masked FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0) AS c ON c.customer_key = a.customer_key
    ${msg.elder ? ELDER_JOIN : ''}
    ${plan.joins.join('\n    ')}
    ORDER BY en`
  const rows = await db.query(sql, { ...b.params, key: o.customerKey ?? 0, today, elderTag: ELDER_TAG }, row)
  const zh = rows.find((r) => r.en === 0)
  const en = rows.find((r) => r.en === 1)
  if (!zh || !en) throw new AppError('INTERNAL', 'The template preview returned no row.')
  const pair = (r: z.infer<typeof row>): TextPair => ({ title: r.title, body: r.body })
  return {
    customerNo: o.customerNo,
    localDate: today,
    elder: zh.elder === 1,
    language: o.customerKey === null ? null : zh.language === 'en' ? 'en' : 'zh',
    texts: { zh: pair(zh), en: pair(en) },
    fields: names.map((field, i) => ({ field, value: zh.values[i] ?? null, masked: masked(field) })),
  }
}
