import { enc, get } from './api.js'
import type { SavedSegment, Tag, TagDetail, Tenant } from './types.js'

/**
 * What several screens read, fetched once per sign-in: the tenant, the tag catalogue (and each
 * tag's distribution when first needed) and the saved segments.
 */

let tenant: Tenant | null = null
let tagList: Promise<Tag[]> | null = null
const details = new Map<string, Promise<TagDetail>>()
let segmentList: Promise<SavedSegment[]> | null = null
let eventList: Promise<string[] | null> | null = null

export const store = {
  tenant: (): Tenant => {
    if (!tenant) throw new Error('not signed in')
    return tenant
  },
  tenantOrNull: (): Tenant | null => tenant,
  /** Keeps the caches when the same tenant signs in again (a re-render), drops them otherwise. */
  setTenantIfNew(t: Tenant) {
    if (tenant?.id !== t.id) store.setTenant(t)
  },
  setTenant(t: Tenant | null) {
    tenant = t
    tagList = null
    segmentList = null
    eventList = null
    details.clear()
  },
  tags: (): Promise<Tag[]> => (tagList ??= get<{ tags: Tag[] }>('/v1/tags').then((r) => r.tags)),
  tag(name: string): Promise<TagDetail> {
    let p = details.get(name)
    if (!p) {
      p = get<TagDetail>(`/v1/tags/${enc(name)}`)
      p.catch(() => details.delete(name))
      details.set(name, p)
    }
    return p
  },
  segments: (): Promise<SavedSegment[]> => (segmentList ??= get<{ segments: SavedSegment[] }>('/v1/segments').then((r) => r.segments)),
  /** The track events the bank's app sent lately, most frequent first; null when they cannot be read (no suggestions then). */
  eventNames: (): Promise<string[] | null> =>
    (eventList ??= get<{ events: { name: string }[] }>('/v1/events/names').then(
      (r) => r.events.map((e) => e.name),
      () => null,
    )),
  segmentsChanged() {
    segmentList = null
  },
}
