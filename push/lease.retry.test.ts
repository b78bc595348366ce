import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Db, TenantDb } from '../core/db.js'
import { createLeaseManager } from './lease.manager.js'
import { campaign, openPush, seedBank, type PushFixture } from './push.fixture.js'
import { campaignStats, listTargets } from './stats.js'

/**
 * A failed delivery acknowledged with `retry` while a refill is reading the queue: the refill
 * began before the release was written, so it cannot hold the target, and the next pull reads
 * again rather than waiting for the periodic refresh. Security messages, which quiet hours do not
 * hold, so the test passes at any time of day.
 */

let fx: PushFixture

beforeAll(async () => {
  fx = await openPush({ requireApproval: false })
}, 60_000)
afterAll(async () => fx?.close())

/** The engine, with each tenant read of the queue held (after the engine answered) until `release` is called. */
function heldReads(db: Db) {
  let gate: Promise<void> | null = null
  let open = () => {}
  let reading = () => {}
  const started = new Promise<void>((r) => (reading = r))
  const wrapped: Db = Object.create(db, {
    forTenant: {
      value: (t: number): TenantDb => {
        const tdb = db.forTenant(t)
        return Object.create(tdb, {
          stream: {
            value: async (sql: string, params: Record<string, unknown>) => {
              const out = await tdb.stream(sql, params)
              if (gate) {
                reading()
                await gate
              }
              return out
            },
          },
        }) as TenantDb
      },
    },
  }) as Db
  return {
    db: wrapped,
    hold: () => (gate = new Promise<void>((r) => (open = r))),
    started,
    release: () => {
      gate = null
      open()
    },
  }
}

describe('retry', () => {
  it('returns a retried failure on the next pull when its ack came during a refill', async () => {
    const now = new Date()
    const t = await seedBank(fx, { slug: 'retry-race', timeZone: 'Asia/Shanghai', prefix: 'RR', n: 3, loanDay: '2026-03-18', asOf: now })
    await fx.push.campaigns.save(t, 'alert', campaign({ purpose: 'security', priority: 'critical', schedule: { kind: 'once', at: new Date(now.getTime() - 60_000).toISOString() } }), 'test')
    expect((await fx.push.runTargeting(t, { asOf: now })).campaigns[0]).toMatchObject({ queued: 3 })
    const reads = heldReads(fx.engine.db)
    const leases = createLeaseManager({
      db: reads.db,
      log: fx.engine.log,
      metrics: fx.metrics,
      activeCampaigns: async (x) => (await fx.push.campaigns.active(x)).map((c) => c.id),
      policy: async (x) => ({ ...(await fx.push.policies.get(x)), timeZone: (await fx.tenants.get(x)).timeZone }),
      options: { idleRefreshMs: 0 },
    })
    try {
      const [x] = await leases.pull(t, { limit: 1, leaseSeconds: 60 })
      // A new target or a changed campaign: the next pull reads the queue again, and that read is held.
      leases.invalidate(t)
      reads.hold()
      const second = leases.pull(t, { limit: 1, leaseSeconds: 60 })
      await reads.started
      expect(await leases.ack(t, [{ targetId: x!.targetId, status: 'failed', reason: 'provider timeout', retry: true }])).toMatchObject({ accepted: 1 })
      reads.release()
      const [y] = await second
      expect(y!.targetId).not.toBe(x!.targetId)
      const third = await leases.pull(t, { limit: 10, leaseSeconds: 60 })
      expect(third.map((r) => r.targetId)).toContain(x!.targetId)
      expect(third).toHaveLength(2)
    } finally {
      await leases.close()
    }
  })
})

describe('the last attempt', () => {
  it('counts a failure retried after the last lease maxAttempts allows as failed, since no lease follows', async () => {
    const now = new Date()
    const t = await seedBank(fx, { slug: 'retry-last', timeZone: 'Asia/Shanghai', prefix: 'RL', n: 2, loanDay: '2026-03-18', asOf: now })
    await fx.push.policies.save(t, { maxAttempts: 1 }, 'test')
    await fx.push.campaigns.save(t, 'alert', campaign({ purpose: 'security', priority: 'critical', schedule: { kind: 'once', at: new Date(now.getTime() - 60_000).toISOString() } }), 'test')
    expect((await fx.push.runTargeting(t, { asOf: now })).campaigns[0]).toMatchObject({ queued: 2 })
    const [x, y] = await fx.push.leases.pull(t, { limit: 10, leaseSeconds: 60 })
    await fx.push.leases.ack(t, [
      { targetId: x!.targetId, status: 'failed', reason: 'provider timeout', retry: true },
      { targetId: y!.targetId, status: 'failed', reason: 'token unregistered' },
    ])
    expect(await fx.push.leases.pull(t, { limit: 10, leaseSeconds: 60 })).toEqual([])
    const db = fx.engine.db.forTenant(t)
    expect(await campaignStats(db, await fx.push.campaigns.get(t, 'alert'))).toMatchObject({ queued: 2, sent: 0, failed: 2 })
    const listed = (await listTargets(db, 'alert', { limit: 10 })).targets
    expect(listed.map((r) => [r.status, r.reason]).sort()).toEqual([['failed', 'provider timeout'], ['failed', 'token unregistered']])
  })
})
