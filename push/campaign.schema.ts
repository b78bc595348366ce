import { validate as validateCron } from 'node-cron'
import { z } from 'zod'
import { instantSchema } from '../core/time.js'
import { eventFilter, type EventFilter } from '../segments/segment.schema.js'
import { tagName } from '../tags/tag.schema.js'
import { fieldsOf, parseTemplate, type TemplatePart } from './template.js'

/** The longest a target stays deliverable after it is due (7 days): lease refills rely on it. */
export const MAX_TTL_MINUTES = 10_080

/**
 * A push campaign: who (an audience: a saved segment, an inline rule in the segment language, or
 * everyone; optionally narrowed by a date trigger), what (a message template in zh and en, with
 * an optional simplified variant for elder customers), how (channel, purpose, priority class),
 * when (once, a cron in the tenant's time zone, each customer's usual active hour, or an event
 * sequence) and for how long (validity window, time to live of each target).
 */

export const CAMPAIGN_ID = /^[a-z][a-z0-9_-]{1,62}$/
export const PUSH_PURPOSES = ['security', 'service', 'marketing'] as const
export type PushPurpose = (typeof PUSH_PURPOSES)[number]
export const CHANNELS = ['push', 'sms', 'in_app'] as const
export type Channel = (typeof CHANNELS)[number]
/** Ordered: a higher class may use more of a customer's daily and weekly budget. */
export const PRIORITIES = ['low', 'normal', 'high', 'critical'] as const
export type Priority = (typeof PRIORITIES)[number]
export const PRODUCT_KINDS = ['deposit', 'wealth', 'loan', 'insurance', 'pension', 'government', 'payment', 'agri'] as const

// Within what the engine holds: a time in year 0 would otherwise be saved and run as year -1.
const instant = instantSchema

/** Five fields (minute hour day month weekday), as node-cron reads them, in the tenant's zone. */
export const cronExpr = z
  .string()
  .max(100)
  .refine((c) => c.trim().split(/\s+/).length === 5 && validateCron(c), { message: 'a five-field cron expression (minute hour day month weekday)' })

export const scheduleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('once'), at: instant }),
  z.strictObject({ kind: z.literal('cron'), cron: cronExpr }),
  z.strictObject({
    kind: z.literal('active_hour'),
    fallbackHour: z.number().int().min(0).max(23).default(10).describe('local hour for customers without recent events'),
    lookbackDays: z.number().int().min(1).max(90).default(28),
  }),
  z.strictObject({
    kind: z.literal('event'),
    steps: z
      .array(z.strictObject({ event: eventFilter }))
      .min(1)
      .max(4)
      .refine((s) => (s[s.length - 1]?.event.names?.length ?? 0) > 0, { message: 'the last step names its events (they are what wakes the trigger)' }),
    withinMinutes: z.number().int().min(1).max(1440),
  }),
])
export type Schedule = z.infer<typeof scheduleSchema>
export type EventSchedule = Extract<Schedule, { kind: 'event' }> & { steps: { event: EventFilter }[] }

const daysBefore = z.number().int().min(0).max(90)
export const dateTriggerSchema = z.discriminatedUnion('on', [
  z.strictObject({ on: z.literal('birthday') }),
  z.strictObject({ on: z.literal('loan_due'), daysBefore }),
  z.strictObject({ on: z.literal('bill_due'), daysBefore }),
  z.strictObject({ on: z.literal('tag_date'), tag: tagName, daysBefore: z.number().int().min(-90).max(90) }),
  z.strictObject({ on: z.literal('product_opening'), productKind: z.enum(PRODUCT_KINDS), daysBefore }),
])
export type DateTrigger = z.infer<typeof dateTriggerSchema>

export const audienceSchema = z
  .strictObject({
    segment: z.string().regex(CAMPAIGN_ID, 'a saved segment id').optional(),
    rule: z.unknown().optional().describe('an inline rule in the segment language'),
    all: z.literal(true).optional(),
  })
  .refine((a) => [a.segment, a.rule, a.all].filter((x) => x !== undefined).length === 1, { message: 'exactly one of segment, rule or all' })
export type Audience = z.infer<typeof audienceSchema>

const text = (max: number) => z.strictObject({ zh: z.string().min(1).max(max), en: z.string().min(1).max(max) })
const variant = z.strictObject({ title: text(100).optional(), body: text(1000) })
export const messageSchema = variant.extend({ elder: variant.optional().describe('the simplified text elder customers get') })
export type Message = z.infer<typeof messageSchema>

/** Message variants (A/B): ids are capital letters; the first listed is the baseline the others are compared with. */
export const VARIANT_ID = /^[A-Z]$/
export const MAX_VARIANTS = 8
export const variantSchema = z.strictObject({
  id: z.string().regex(VARIANT_ID, 'one capital letter, A to Z'),
  weight: z.number().int().min(0).max(100).describe('per cent of the campaign\'s customers who get this variant; the weights add up to 100'),
  message: messageSchema,
})
export type MessageVariant = z.infer<typeof variantSchema>

export const campaignInput = z
  .strictObject({
    name: z.string().min(1).max(200),
    description: z.string().max(2000).default(''),
    purpose: z.enum(PUSH_PURPOSES),
    channel: z.enum(CHANNELS).default('push'),
    priority: z.enum(PRIORITIES).default('normal'),
    audience: audienceSchema.default({ all: true }),
    dateTrigger: dateTriggerSchema.optional(),
    schedule: scheduleSchema,
    message: messageSchema.optional().describe('the message; a campaign with variants leaves it out'),
    variants: z
      .array(variantSchema)
      .min(2, 'at least two variants (one message goes in message)')
      .max(MAX_VARIANTS, `at most ${MAX_VARIANTS} variants`)
      .optional()
      .describe('message variants (A/B), each customer getting one by a stable split of the weights'),
    validFrom: instant.optional(),
    validUntil: instant.optional(),
    ttlMinutes: z.number().int().min(1).max(MAX_TTL_MINUTES).default(1440).describe('how long a target stays deliverable after it is due'),
    controlPerMille: z.number().int().min(0).max(500).default(0).describe('a per-campaign control group, kept out for uplift'),
    conversion: z.strictObject({ event: eventFilter, withinHours: z.number().int().min(1).max(720) }).optional(),
    status: z.enum(['active', 'paused']).default('active'),
    changeNote: z.string().max(500).default(''),
  })
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message })
    if (c.priority === 'critical' && c.purpose !== 'security') issue(['priority'], 'critical is for security messages')
    if (c.schedule.kind === 'event' && c.dateTrigger) issue(['dateTrigger'], 'an event-triggered campaign takes no date trigger')
    if (c.validFrom && c.validUntil && Date.parse(c.validUntil) <= Date.parse(c.validFrom)) issue(['validUntil'], 'must be after validFrom')
    if (c.message && c.variants) issue(['message'], 'a campaign with variants carries its messages in variants: leave message out')
    if (!c.message && !c.variants) issue(['message'], 'required (or variants)')
    if (c.variants) {
      const sum = c.variants.reduce((a, v) => a + v.weight, 0)
      if (sum !== 100) issue(['variants'], `the weights add up to ${sum}, not 100`)
      c.variants.forEach((v, i) => {
        if (c.variants!.findIndex((x) => x.id === v.id) !== i) issue(['variants', i, 'id'], `${v.id} names another variant too`)
      })
    }
    for (const { message, path: at } of variantsOf(c)) {
      for (const { path, value } of texts(message)) {
        const t = parseTemplate(value)
        for (const i of t.issues) issue([...at, ...path], `at ${i.offset}: ${i.message}`)
        if (fieldsOf(t.parts).some((f) => f.startsWith('product.')) && c.dateTrigger?.on !== 'product_opening') {
          issue([...at, ...path], 'product fields need a product_opening date trigger')
        }
      }
    }
  })
export type CampaignInput = z.input<typeof campaignInput>
export type Campaign = z.infer<typeof campaignInput>

/** A campaign's messages with their split: its variants, or its one message as variant '' of weight 100. */
export function variantsOf(c: Pick<Campaign, 'message' | 'variants'>): (MessageVariant & { path: (string | number)[] })[] {
  if (c.variants) return c.variants.map((v, i) => ({ ...v, path: ['variants', i, 'message'] }))
  return c.message ? [{ id: '', weight: 100, message: c.message, path: ['message'] }] : []
}

/** Fields the campaign's messages name, over every variant. */
export function campaignFields(c: Pick<Campaign, 'message' | 'variants'>): string[] {
  return [...new Set(variantsOf(c).flatMap((v) => messageFields(v.message)))]
}

/** Every text of a message with its path under `message`. */
export function texts(m: Message): { path: string[]; value: string }[] {
  const out: { path: string[]; value: string }[] = []
  const add = (v: { title?: { zh: string; en: string } | undefined; body: { zh: string; en: string } }, prefix: string[]) => {
    for (const lang of ['zh', 'en'] as const) {
      if (v.title) out.push({ path: [...prefix, 'title', lang], value: v.title[lang] })
      out.push({ path: [...prefix, 'body', lang], value: v.body[lang] })
    }
  }
  add(m, [])
  if (m.elder) add(m.elder, ['elder'])
  return out
}

/** The parsed parts of each text, by variant and language. */
export interface CompiledMessage {
  standard: Record<'zh' | 'en', { title: TemplatePart[] | null; body: TemplatePart[] }>
  elder: Record<'zh' | 'en', { title: TemplatePart[] | null; body: TemplatePart[] }> | null
}

export function compileMessage(m: Message): CompiledMessage {
  const parts = (s: string) => parseTemplate(s).parts
  const of = (v: { title?: { zh: string; en: string } | undefined; body: { zh: string; en: string } }) => ({
    zh: { title: v.title ? parts(v.title.zh) : null, body: parts(v.body.zh) },
    en: { title: v.title ? parts(v.title.en) : null, body: parts(v.body.en) },
  })
  return { standard: of(m), elder: m.elder ? of(m.elder) : null }
}

/** Fields the message names, over every variant and language. */
export function messageFields(m: Message): string[] {
  return [...new Set(texts(m).flatMap((t) => fieldsOf(parseTemplate(t.value).parts)))]
}

export interface SavedCampaign extends Omit<Campaign, 'changeNote' | 'status'> {
  id: string
  version: number
  /** archived: put away, never runs (only active campaigns are targeted, triggered or pulled). */
  status: 'active' | 'paused' | 'retired' | 'archived'
  createdBy: string
  createdAt: string
  changeNote: string
}
