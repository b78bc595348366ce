import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, openPushApp, seedBank, targetsOf, type PushFixture } from './push.fixture.js'

/**
 * Archiving a campaign (issue 21): it leaves the default list (a filter shows it), never runs
 * (by hand, on schedule, or through pulls of what it queued before), cannot be changed until
 * restored, and comes back paused.
 */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (id: string, body: object) => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}`, headers: auth(keys.admin!), payload: body })
const archive = (id: string, archived: boolean, key = keys.admin!) => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}/archived`, headers: auth(key), payload: { archived } })
const run = async (id: string) => (await app.inject({ method: 'POST', url: `/v1/push/campaigns/${id}/run`, headers: auth(keys.admin!), payload: {} })).json()
const ids = async (query = '') => (await app.inject({ url: `/v1/push/campaigns${query}`, headers: auth(keys.admin!) })).json().campaigns.map((c: { id: string }) => c.id)
const dueNow = () => ({ schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() } })

beforeAll(async () => {
  // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
  const opened = await openPushApp({ requireApproval: false })
  fx = opened.fx
  app = opened.app
  const service = opened.keyService
  t = await seedBank(fx, { slug: 'archive-bank', timeZone: 'Asia/Shanghai', prefix: 'AB', n: 20, loanDay: '2026-03-18', asOf: new Date(), marketingForAll: true })
  for (const role of ['admin', 'analyst'] as const) keys[role] = (await service.issue(t, { roles: [role], holder: `Wang Fang (${role})` })).key
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('PUT /v1/push/campaigns/:id/archived', () => {
  it('an archived campaign is not run by hand nor on schedule, and comes back paused', async () => {
    expect((await put('spring-wealth', campaign({ name: '春季理财', ...dueNow() }))).statusCode).toBe(201)
    const out = await archive('spring-wealth', true)
    expect(out.statusCode).toBe(200)
    expect(out.json()).toMatchObject({ changed: true, campaign: { status: 'archived', version: 2, createdBy: 'Wang Fang (admin)' } })
    expect((await archive('spring-wealth', true)).json().changed).toBe(false)

    expect((await run('spring-wealth')).campaigns[0]).toMatchObject({ skipped: 'archived', targeted: 0 })
    const scheduled = await fx.push.runTargeting(t)
    expect(scheduled.campaigns.find((c) => c.campaignId === 'spring-wealth')).toMatchObject({ skipped: 'archived', targeted: 0 })
    expect((await targetsOf(fx, t, 'spring-wealth')).size).toBe(0)

    // Changing it is refused until it is restored; restored, it is paused.
    const change = await put('spring-wealth', campaign({ name: '春季理财 2', ...dueNow() }))
    expect(change.statusCode).toBe(409)
    expect(change.json().error.issues[0].field).toBe('archived')
    const back = await archive('spring-wealth', false)
    expect(back.json()).toMatchObject({ changed: true, campaign: { status: 'paused', version: 3 } })
    expect((await run('spring-wealth')).campaigns[0]).toMatchObject({ skipped: 'paused' })
    expect((await put('spring-wealth', campaign({ name: '春季理财', status: 'active', ...dueNow() }))).statusCode).toBe(200)
    expect((await run('spring-wealth')).campaigns[0].queued).toBeGreaterThan(0)
  })

  it('what a campaign queued before it was archived is not handed to the notification service', async () => {
    expect((await put('bill-tip', campaign({ name: '账单提醒', purpose: 'service', ...dueNow() }))).statusCode).toBe(201)
    expect((await run('bill-tip')).campaigns[0].queued).toBeGreaterThan(0)
    expect((await archive('bill-tip', true)).statusCode).toBe(200)
    const pulled = await fx.push.leases.pull(t, { limit: 1000, leaseSeconds: 60 })
    expect(pulled.filter((x) => x.campaignId === 'bill-tip')).toEqual([])
    expect((await archive('bill-tip', false)).statusCode).toBe(200)
  })

  it('lists archived campaigns only on request, searches by id, name or description, and needs campaigns:write', async () => {
    expect((await put('elder-care', campaign({ name: '长辈关怀', description: 'Monthly call', ...dueNow() }))).statusCode).toBe(201)
    expect((await archive('elder-care', true)).statusCode).toBe(200)
    expect(await ids()).not.toContain('elder-care')
    expect(await ids('?archived=only')).toEqual(['elder-care'])
    expect(await ids('?archived=include')).toEqual(expect.arrayContaining(['elder-care', 'spring-wealth']))
    expect(await ids(`?archived=include&q=${encodeURIComponent('长辈')}`)).toEqual(['elder-care'])
    expect(await ids('?archived=include&q=MONTHLY')).toEqual(['elder-care'])
    expect(await ids('?q=spring')).toEqual(['spring-wealth'])
    const bad = await app.inject({ url: '/v1/push/campaigns?archived=maybe', headers: auth(keys.admin!) })
    expect(bad.statusCode).toBe(400)
    expect(JSON.stringify(bad.json().error)).toContain('archived')
    expect((await archive('elder-care', false, keys.analyst)).statusCode).toBe(403)
    expect((await archive('no-such-campaign', true)).statusCode).toBe(404)
  })
})
