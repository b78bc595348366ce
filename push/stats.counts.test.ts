import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { localEvent } from '../test/fixtures.js'
import { campaign, no, openPush, seedBank, type PushFixture } from './push.fixture.js'
import { campaignStats, listTargets } from './stats.js'

/**
 * What a campaign's statistics count on the real engine: each target once, whatever rows repeat
 * it (acknowledgements that repeat or contradict one already given, copies of a target row a
 * replacing merge has not yet folded). Security messages, which quiet hours do not hold, so the
 * tests pass at any time of day.
 */

let fx: PushFixture

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
}, 60_000)
afterAll(async () => fx?.close())

async function dueTargets(slug: string, n: number, over: Record<string, unknown> = {}): Promise<number> {
  const now = new Date()
  const t = await seedBank(fx, { slug, timeZone: 'Asia/Shanghai', prefix: slug.slice(0, 2).toUpperCase(), n, loanDay: '2026-03-18', asOf: now })
  await fx.push.campaigns.save(t, 'alert', campaign({ purpose: 'security', priority: 'critical', schedule: { kind: 'once', at: new Date(now.getTime() - 60_000).toISOString() }, ...over }), 'test')
  expect((await fx.push.runTargeting(t, { asOf: now })).campaigns[0]).toMatchObject({ queued: n })
  return t
}

describe('acknowledgements', () => {
  it('counts a target acknowledged twice once, by its last outcome, in the funnel and per variant', async () => {
    const variants = [
      { id: 'A', weight: 50, message: { body: { zh: '注意 {{name}}', en: 'Careful {{name}}' } } },
      { id: 'B', weight: 50, message: { body: { zh: '提醒 {{name}}', en: 'Mind {{name}}' } } },
    ]
    const t = await dueTargets('double-ack', 3, { message: undefined, variants })
    const [a, b, c] = await fx.push.leases.pull(t, { limit: 10, leaseSeconds: 60 })
    await fx.push.leases.ack(t, [
      { targetId: a!.targetId, status: 'delivered' },
      { targetId: b!.targetId, status: 'failed', reason: 'token unregistered' },
      { targetId: c!.targetId, status: 'delivered' },
    ])
    // The notification service repeats the first ack (a retry after a timeout) and contradicts the second.
    await fx.push.leases.ack(t, [
      { targetId: a!.targetId, status: 'delivered' },
      { targetId: b!.targetId, status: 'delivered' },
    ])
    const db = fx.engine.db.forTenant(t)
    const c0 = await fx.push.campaigns.get(t, 'alert')
    const stats = await campaignStats(db, c0)
    const listed = (await listTargets(db, 'alert', { limit: 10 })).targets
    const byStatus = (s: string) => listed.filter((x) => x.status === s).length
    expect({ sent: stats.sent, failed: stats.failed }).toEqual({ sent: byStatus('delivered'), failed: byStatus('failed') })
    expect(stats.sent + stats.failed).toBe(3)
    const perVariant = stats.variants.reduce((s, v) => ({ sent: s.sent + v.sent, failed: s.failed + v.failed }), { sent: 0, failed: 0 })
    expect(perVariant).toEqual({ sent: stats.sent, failed: stats.failed })
  })
})

describe('conversion', () => {
  it('counts each target once in the treated group, whatever copies of its row are not yet merged', async () => {
    const t = await dueTargets('conv-copies', 6, { conversion: { event: { names: ['loan_repaid'] }, withinHours: 72 } })
    const db = fx.engine.db.forTenant(t)
    // Two targeting runs racing write the same rows twice; the engine folds them only at a merge.
    await fx.engine.db.system.command(`INSERT INTO push_targets SELECT * FROM push_targets WHERE tenant_id = {t:UInt16} AND campaign_id = 'alert'`, { t })
    const later = new Date(Date.now() + 3_600_000).toISOString().slice(0, 16).replace('T', ' ')
    await db.insert('events', [1, 2].map((k) => ({ ...localEvent(k, later, 'loan_repaid', {}, 'track', 'Z'), user_id: no('CO', k), violations: [] })))
    const s = await campaignStats(db, await fx.push.campaigns.get(t, 'alert'))
    expect(s.targeted).toBe(6)
    expect(s.queued).toBe(6)
    expect(s.conversion?.groups.treated).toEqual({ customers: 6, converted: 2, rate: 2 / 6 })
  })
})
