import { AppError, isAppError } from '../core/errors.js'
import { compileSegment } from '../segments/segment.compile.js'
import { segmentReferencesOf, type SegmentRepository, type SegmentUseFinder } from '../segments/segment.repository.js'
import { parseSegment } from '../segments/segment.schema.js'
import { tagLeavesOf } from '../segments/segment.schema.js'
import { visibleTo } from '../tags/tag.catalog.js'
import type { TagRepository, TagUse, TagUseFinder } from '../tags/tag.repository.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import type { TenantService } from '../tenants/tenants.service.js'
import { campaignFields, messageFields, variantsOf, type Campaign, type PushPurpose, type SavedCampaign } from './campaign.schema.js'
import { SEGMENT_PURPOSES } from './targeting.audience.js'
import { TAG_FIELD } from './template.js'

/**
 * What a campaign's schema cannot know and saving must refuse, each with the field at fault:
 * an unknown saved segment or one of another purpose; an inline rule that does not compile
 * against the tenant's tags (its issues keep their node paths, under `audience.rule`); a tag a
 * message names that does not exist, may not be used for the campaign's purpose, or is of high
 * sensitivity (risk flags never go into message text); a date trigger over a tag that is not a
 * date.
 *
 * Tags are those the caller may use: high-sensitivity ones (risk flags) only with personal:read
 * (README, roles). To a key without it a high tag is unknown, refused as a tag that does not
 * exist would be, so the refusal does not tell that the flag is there.
 */

/** Checks a campaign for a tenant, against every tag (`withSensitive`) or the low and medium ones. */
export type CampaignCheck = (tenantId: number, c: Campaign, withSensitive: boolean) => Promise<void>

const invalid = (field: string, message: string) => new AppError('VALIDATION_FAILED', `${field}: ${message}`, { issues: [{ field, message }] })

function prefixed(e: unknown, prefix: string): unknown {
  if (!isAppError(e) || e.code !== 'VALIDATION_FAILED') return e
  const issues = (e.issues ?? []).map((i) => ({ ...i, field: i.field ? `${prefix}.${i.field}` : prefix }))
  return new AppError('VALIDATION_FAILED', e.message, { issues })
}

/** Where live campaigns use `tag`, each for its own purpose (audience rule, message, date trigger). */
export function campaignTagUses(campaigns: { list(tenantId: number): Promise<SavedCampaign[]> }): TagUseFinder {
  return async (tenantId, tag) =>
    (await campaigns.list(tenantId)).flatMap((c) => {
      const at = (field: string): TagUse => ({ kind: 'campaign', id: c.id, field, purpose: c.purpose })
      const uses = c.audience.rule === undefined ? [] : tagLeavesOf(c.audience.rule, 'audience.rule').filter((l) => l.tag === tag).map((l) => at(l.field))
      if (campaignFields(c).includes(`tag.${tag}`)) uses.push(at(c.variants ? 'variants' : 'message'))
      if (c.dateTrigger?.on === 'tag_date' && c.dateTrigger.tag === tag) uses.push(at('dateTrigger.tag'))
      return uses
    })
}

/** Where campaigns (archived ones too: they may be restored) name a saved segment as audience or in their rule. */
export function campaignSegmentUses(campaigns: { list(tenantId: number): Promise<SavedCampaign[]> }): SegmentUseFinder {
  return async (tenantId, segmentId) =>
    (await campaigns.list(tenantId)).flatMap((c) => [
      ...(c.audience.segment === segmentId ? [{ kind: 'campaign' as const, id: c.id, field: 'audience.segment' }] : []),
      ...(c.audience.rule === undefined ? [] : segmentReferencesOf(c.audience.rule, segmentId, 'audience.rule').map((field) => ({ kind: 'campaign' as const, id: c.id, field }))),
    ])
}

/**
 * Why a message may not name `field` (undefined: it may), against the tags the caller may use;
 * `purpose`, when known, is the campaign's. The template preview refuses the same fields.
 */
export function messageFieldProblem(field: string, defs: ReadonlyMap<string, TagDefinition>, purpose?: PushPurpose): string | undefined {
  const m = TAG_FIELD.exec(field)
  if (!m) return undefined
  const d = defs.get(m[1]!)
  if (!d) return `{{${field}}}: no tag ${m[1]}`
  if (purpose !== undefined && !d.purpose.includes(purpose)) return `{{${field}}}: tag ${d.name} may be used for ${d.purpose.join(', ')}, not ${purpose}`
  if (d.sensitivity === 'high') return `{{${field}}}: tag ${d.name} is of high sensitivity and stays out of message text`
  return undefined
}

export function createCampaignCheck(deps: { segments: SegmentRepository; tags: TagRepository; tenants: TenantService }): CampaignCheck {
  return async (tenantId, c, withSensitive) => {
    const [tenant, list] = await Promise.all([deps.tenants.get(tenantId), deps.tags.list(tenantId)])
    const defs = new Map<string, TagDefinition>(list.filter((d) => visibleTo(withSensitive, d.sensitivity)).map((d) => [d.name, d]))
    // A saved segment named as the audience stays usable by every caller: its rule was checked
    // against its author's tags when it was saved, so one over a high tag was made by a key that
    // may use it (an admin), who chose to offer it. `{segment: id}` references inside an inline
    // rule are expanded below and compiled against this caller's tags like the rest of the rule.
    if (c.audience.segment) {
      const s = await deps.segments.get(tenantId, c.audience.segment).catch(() => undefined)
      if (!s) throw invalid('audience.segment', `no saved segment ${c.audience.segment}`)
      if (s.archived) throw invalid('audience.segment', `segment ${c.audience.segment} is archived: restore it first`)
      if (!SEGMENT_PURPOSES[c.purpose].includes(s.purpose)) throw invalid('audience.segment', `a ${s.purpose} segment cannot be the audience of a ${c.purpose} campaign`)
    }
    if (c.audience.rule !== undefined) {
      try {
        const rule = await deps.segments.expanded(tenantId, c.audience.rule)
        compileSegment(parseSegment({ purpose: c.purpose, rule }), { defs, asOf: new Date(), timeZone: tenant.timeZone })
      } catch (e) {
        throw prefixed(e, 'audience')
      }
    }
    for (const v of variantsOf(c)) {
      for (const f of messageFields(v.message)) {
        const problem = messageFieldProblem(f, defs, c.purpose)
        if (problem) throw invalid(v.path.join('.'), problem)
      }
    }
    if (c.dateTrigger?.on === 'tag_date') {
      const d = defs.get(c.dateTrigger.tag)
      if (!d || d.type !== 'date') throw invalid('dateTrigger.tag', `${c.dateTrigger.tag} is not a date tag`)
    }
  }
}
