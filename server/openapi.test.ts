import { describe, expect, it } from 'vitest'
import { openApiDocument } from './openapi.js'

/** The API document a client generator reads: every reference in it must lead somewhere. */
describe('the OpenAPI document', () => {
  it('resolves every $ref inside itself, recursive schemas included', { timeout: 180_000 }, async () => {
    const doc = await openApiDocument()
    const refs = new Set<string>()
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk)
      else if (v && typeof v === 'object')
        for (const [k, child] of Object.entries(v)) {
          if (k === '$ref' && typeof child === 'string') refs.add(child)
          else walk(child)
        }
    }
    walk(doc)
    // The segment plan is a tree: it must be named once and referred to, not left dangling.
    expect(refs).toContain('#/components/schemas/SegmentPlanNode')
    const dangling = [...refs].filter((ref) => {
      if (!ref.startsWith('#/')) return true
      let at: unknown = doc
      for (const part of ref.slice(2).split('/')) at = at && typeof at === 'object' ? (at as Record<string, unknown>)[part.replaceAll('~1', '/').replaceAll('~0', '~')] : undefined
      return at === undefined
    })
    expect(dangling).toEqual([])
  })
})
