import { z } from 'zod'
import { AppError, type ErrorIssue } from '../core/errors.js'
import { daySchema } from '../core/time.js'
import { PURPOSES, type Purpose } from '../tags/tag.schema.js'
import { onlyTagLeaves } from '../segments/segment.memory.js'
import { segmentSchema, type SegmentNode } from '../segments/segment.schema.js'

/**
 * A tenant's home-screen catalogue ("一行一面"): the modules of the screen and the items that
 * can fill them, each with who may see it (`when`, a tag-only segment tree: it is evaluated on
 * the tag bitmaps when the model is built), priority, validity dates and exposure caps.
 *
 * The group's catalogue is every member bank's default; a member's own document overrides by
 * id (a module or item with the same id replaces the group's), adds its own, and `disable`s
 * group entries it does not offer. Products come from the bank's own `products` table through
 * a module's `products` selector, so a product launched in the core system reaches the screen
 * without a catalogue change; `productRules` keep products from the customers they must not
 * reach (no loan offer to a customer who is overdue or flagged vulnerable).
 */

export const ITEM_TYPES = ['reminder', 'service', 'product', 'promotion', 'tip', 'help'] as const
export type ItemType = (typeof ITEM_TYPES)[number]
export const PRODUCT_KINDS = ['deposit', 'wealth', 'loan', 'insurance', 'pension', 'government', 'payment', 'agri'] as const
export type ProductKind = (typeof PRODUCT_KINDS)[number]

const ENTRY_ID = /^[a-z][a-z0-9_.:-]{0,62}$/
const entryId = z.string().regex(ENTRY_ID, 'lower-case letters, digits and _ . : - (at most 63, starting with a letter)')
const text = z.string().trim().min(1).max(120)
const localized = z.strictObject({ zh: text, en: text })
const deeplink = z.string().max(300).regex(/^[a-z][a-z0-9+.-]*:\/\/[^\s]+$/, 'a deeplink such as app://loan/repay')
/**
 * Validity dates are calendar dates within the stored range. Versions saved before that was
 * checked may hold impossible ones ('2020-12-32'): read as stored, and served on no day
 * (model.snapshot.ts), so reading a catalogue never fails on them.
 */
const storedDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date YYYY-MM-DD')
/** A tag-only condition; checked against the tenant's tag definitions when the catalogue is saved. */
const condition = z.unknown()

/** How an entry shows in elder mode: first (ahead of the rest), show, or hide. */
const elder = z.enum(['first', 'show', 'hide'])

export const moduleSchema = z.strictObject({
  id: entryId,
  title: localized,
  /** Higher shows earlier, before personal ranking reorders within the blend. */
  priority: z.number().int().min(0).max(1000).default(100),
  maxItems: z.number().int().min(1).max(20).default(4),
  elder: elder.default('show'),
  when: condition.optional(),
  /** What the customer is told about why the module shows (default: worded from its condition's tags, layout.reasons.ts). */
  why: localized.optional(),
  /** Fill the module from the tenant's products table. */
  products: z
    .strictObject({
      kinds: z.array(z.enum(PRODUCT_KINDS)).min(1),
      categories: z.array(z.string().max(63)).max(50).optional(),
      maxRisk: z.number().int().min(0).max(5).optional(),
    })
    .optional(),
})

const itemShape = (date: z.ZodType<string>) =>
  z
    .strictObject({
      id: entryId,
      module: entryId,
      type: z.enum(ITEM_TYPES),
      title: localized,
      /** Simplified wording for elder mode. */
      elderTitle: localized.optional(),
      deeplink,
      category: z.string().min(1).max(63),
      /** Business boost: added to the blended score (0..100). */
      boost: z.number().min(0).max(100).default(0),
      elder: elder.default('show'),
      when: condition.optional(),
      /** What the customer is told about why the item shows while its condition holds (default: worded from its tags). */
      why: localized.optional(),
      validFrom: date.optional(),
      validTo: date.optional(),
      /** Exposures per customer: at most perDay a day, perWeek in 7 days. */
      cap: z.strictObject({ perDay: z.number().int().min(1).max(100).optional(), perWeek: z.number().int().min(1).max(500).optional() }).optional(),
      /** A reminder's tag (its reason): the item shows while the customer's value of that tag holds. */
      reminderTag: z.string().max(63).optional(),
    })
    .refine((i) => !i.validFrom || !i.validTo || i.validFrom <= i.validTo, { message: 'validFrom is after validTo', path: ['validTo'] })
    .refine((i) => i.type !== 'reminder' || i.when !== undefined, { message: 'a reminder needs a when condition', path: ['when'] })
export const itemSchema = itemShape(daySchema)

export const productRuleSchema = z.strictObject({
  kinds: z.array(z.enum(PRODUCT_KINDS)).min(1),
  /** Customers matching this never see products of these kinds. */
  exclude: condition,
  reason: z.string().min(1).max(200),
})

export const experimentSchema = z.strictObject({
  id: entryId,
  variants: z
    .array(
      z.strictObject({
        name: entryId,
        weight: z.number().int().min(1).max(1000),
        /** Ranking knobs of this variant. */
        popularityWeight: z.number().min(0).max(10).default(1),
        affinityWeight: z.number().min(0).max(10).default(1),
        exploration: z.boolean().default(true),
      }),
    )
    .min(1)
    .max(10),
})

const catalogShape = (item: typeof itemSchema) =>
  z.strictObject({
    modules: z.array(moduleSchema).max(30).default([]),
    items: z.array(item).max(500).default([]),
    productRules: z.array(productRuleSchema).max(50).default([]),
    /** Group entries (modules or items) this tenant does not offer. */
    disable: z.array(entryId).max(500).default([]),
    experiment: experimentSchema.optional(),
    /** Per mille of customers kept out of personalization and marketing pushes, to measure uplift. */
    holdoutPerMille: z.number().int().min(0).max(500).optional(),
  })
export const catalogSchema = catalogShape(itemSchema)
/** A version as stored: its dates as they were accepted when it was saved. */
const storedCatalogSchema = catalogShape(itemShape(storedDate))

export type CatalogModule = z.infer<typeof moduleSchema>
export type CatalogItem = z.infer<typeof itemSchema>
export type ProductRule = z.infer<typeof productRuleSchema>
export type Experiment = z.infer<typeof experimentSchema>
export type Catalog = z.infer<typeof catalogSchema>

/**
 * The purpose a condition of an entry serves, so a tag is used only where its purpose allows:
 * offers are marketing, anti-fraud tips security, product exclusions risk, the rest service.
 */
export function purposeOf(type: ItemType | 'module' | 'rule'): Purpose {
  if (type === 'product' || type === 'promotion') return 'marketing'
  if (type === 'tip') return 'security'
  if (type === 'rule') return 'risk'
  return 'service'
}

/** A condition of the catalogue, parsed as a tag-only segment tree; issues carry `field`. */
export function parseCondition(raw: unknown, field: string, purpose: Purpose, issues: ErrorIssue[]): SegmentNode | undefined {
  const r = segmentSchema.safeParse({ purpose, rule: raw })
  if (!r.success) {
    for (const i of r.error.issues) issues.push({ field: [field, ...i.path.slice(1).map(String)].join('.'), message: i.message })
    return undefined
  }
  if (!onlyTagLeaves(r.data.rule)) {
    issues.push({ field, message: 'catalogue conditions use tag conditions only (all / any / not of {tag, op, value}): they are evaluated on tag bitmaps' })
    return undefined
  }
  return r.data.rule
}

export function invalidCatalog(issues: ErrorIssue[]): AppError {
  return new AppError('VALIDATION_FAILED', `The catalogue is invalid: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`, { issues })
}

/**
 * Parses a catalogue document or throws VALIDATION_FAILED naming every field at fault; `stored`
 * reads a saved version, whose dates are taken as they were accepted then.
 */
export function parseCatalog(input: unknown, opts: { stored?: boolean } = {}): Catalog {
  const { catalog, issues } = checkCatalogShape(input, opts)
  if (!catalog || issues.length) throw invalidCatalog(issues)
  return catalog
}

/** The document's shape and conditions: the catalogue when its shape is valid, and every issue. */
export function checkCatalogShape(input: unknown, opts: { stored?: boolean } = {}): { catalog: Catalog | undefined; issues: ErrorIssue[] } {
  const r = (opts.stored ? storedCatalogSchema : catalogSchema).safeParse(input)
  if (!r.success) return { catalog: undefined, issues: r.error.issues.map((i) => ({ field: i.path.map(String).join('.') || '(root)', message: i.message })) }
  const c = r.data
  const issues: ErrorIssue[] = []
  const dup = (list: { id: string }[], what: string) => {
    const seen = new Set<string>()
    list.forEach((x, i) => {
      if (seen.has(x.id)) issues.push({ field: `${what}.${i}.id`, message: `${x.id} appears twice` })
      seen.add(x.id)
    })
  }
  dup(c.modules, 'modules')
  dup(c.items, 'items')
  c.modules.forEach((m, i) => m.when !== undefined && parseCondition(m.when, `modules.${i}.when`, purposeOf('module'), issues))
  c.items.forEach((it, i) => it.when !== undefined && parseCondition(it.when, `items.${i}.when`, purposeOf(it.type), issues))
  c.productRules.forEach((p, i) => parseCondition(p.exclude, `productRules.${i}.exclude`, purposeOf('rule'), issues))
  return { catalog: c, issues }
}

export { PURPOSES }
