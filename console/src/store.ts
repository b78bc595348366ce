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
  segmentsChanged() {
    segmentList = null
  },
}
