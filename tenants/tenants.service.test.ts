import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createTenantService } from './tenants.service.js'

/**
 * Two processes' registries over one store (several API processes, or several against one
 * server): what one changes, the other sees, at once for a tenant it does not hold, within its
 * maximum age for a change to one it holds.
 */
describe('the tenant registry across processes', () => {
  let engine: TestEngine
  beforeAll(async () => {
    engine = await openTestEngine()
  }, 120_000)
  afterAll(async () => engine?.close())

  it('finds a tenant another process created, and sees its suspension within the maximum age', async () => {
    const a = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
    const b = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC', maxAgeMs: 300 })
    await b.list()
    const made = await a.create({ slug: 'made-in-a', name: 'A' })
    expect((await b.get('made-in-a')).id).toBe(made.id)
    expect(b.cached(made.id)?.status).toBe('active')

    await a.setStatus(made.id, 'disabled')
    const deadline = Date.now() + 5000
    while (b.cached(made.id)?.status !== 'disabled' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(b.cached(made.id)?.status).toBe('disabled')
    expect((await b.get(made.id)).status).toBe('disabled')
  })

  it('still refuses an unknown tenant, after one look', async () => {
    const b = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
    await expect(b.get('never-made')).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })

  it('gives tenants created at the same time in one process distinct ids, and one of two with the same slug', async () => {
    const a = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
    const made = await Promise.all(['same-time-1', 'same-time-2', 'same-time-3'].map((slug) => a.create({ slug, name: slug })))
    expect(new Set(made.map((t) => t.id)).size).toBe(3)
    expect((await a.list()).filter((t) => t.slug.startsWith('same-time-')).map((t) => t.slug).sort()).toEqual(['same-time-1', 'same-time-2', 'same-time-3'])
    const twice = await Promise.allSettled([a.create({ slug: 'same-slug', name: 'first' }), a.create({ slug: 'same-slug', name: 'second' })])
    expect(twice.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected'])
    expect((await a.list()).filter((t) => t.slug === 'same-slug')).toHaveLength(1)
  })

  it('keeps both of two retention changes saved at the same time in one process', async () => {
    const a = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
    const t = await a.create({ slug: 'two-admins', name: 'Two admins' })
    await Promise.all([a.savePrivacy(t.id, { eventsDays: 300 }, 'admin one'), a.savePrivacy(t.id, { tagHistoryDays: 500 }, 'admin two')])
    expect(await a.privacy(t.id)).toMatchObject({ eventsDays: 300, tagHistoryDays: 500 })
  })
})
