import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { inHoldout } from '../core/holdout.js'
import { campaign, no, openPushApp, seedBank, type PushFixture } from './push.fixture.js'

/** Reach before sending: a dry run of a campaign as it would be saved, counted by the targeting statement itself. */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const reach = (id: string, body: object, key = keys.admin!) => app.inject({ method: 'POST', url: `/v1/push/campaigns/${id}/reach`, headers: auth(key), payload: body })
const targets = async () => Number((await fx.engine.db.forTenant(t).query(`SELECT count() AS n FROM push_targets WHERE tenant_id = {tenant:UInt16}`))[0]!.n)

beforeAll(async () => {
  // Not about approval (approval.routes.test.ts is): marketing campaigns here run unapproved.
  const opened = await openPushApp({ requireApproval: false })
  fx = opened.fx
  app = opened.app
  const service = opened.keyService
  t = await seedBank(fx, { slug: 'reach-bank', timeZone: 'Asia/Shanghai', prefix: 'RB', n: 40, loanDay: '2026-03-18', asOf: new Date(), marketingForAll: true })
  for (const role of ['admin', 'analyst'] as const) keys[role] = (await service.issue(t, { roles: [role], holder: `test ${role}` })).key
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('POST /v1/push/campaigns/:id/reach', () => {
  it('counts what a run would queue and leave out, writes nothing, and agrees with the run that follows', async () => {
    fx.holdout.perMille = 300
    try {
      const body = campaign({ schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() } })
      const dry = await reach('draft', body)
      expect(dry.statusCode).toBe(200)
      const held = Array.from({ length: 40 }, (_, i) => i + 1).filter((k) => k !== 11 && inHoldout(t, no('RB', k), 300))
      expect(dry.json()).toMatchObject({ asIfToday: false, audience: 40, reached: 39 - held.length, suppressed: { consent_refused: 1, holdout: held.length } })
      expect(await targets()).toBe(0)
      expect((await app.inject({ url: '/v1/push/campaigns/draft', headers: auth(keys.admin!) })).statusCode).toBe(404)

      expect((await app.inject({ method: 'PUT', url: '/v1/push/campaigns/draft', headers: auth(keys.admin!), payload: body })).statusCode).toBe(201)
      const run = (await app.inject({ method: 'POST', url: '/v1/push/campaigns/draft/run', headers: auth(keys.admin!), payload: {} })).json().campaigns[0]
      expect({ targeted: run.targeted, queued: run.queued, suppressed: run.suppressed }).toEqual({ targeted: dry.json().audience, queued: dry.json().reached, suppressed: dry.json().suppressed })
      // Everyone has today's target now: nobody is left to reach.
      expect((await reach('draft', body)).json()).toMatchObject({ audience: 0, reached: 0, suppressed: {} })
    } finally {
      fx.holdout.perMille = 0
    }
  })

  it('counts a schedule with no occurrence today as if it had one, and says so', async () => {
    // A weekday three days from today's in the bank's zone (UTC+8).
    const notToday = (new Date(Date.now() + 8 * 3_600_000).getUTCDay() + 3) % 7
    const out = await reach('not-today', campaign({ purpose: 'service', schedule: { kind: 'cron', cron: `0 10 * * ${notToday}` } }))
    expect(out.statusCode).toBe(200)
    expect(out.json()).toMatchObject({ asIfToday: true, audience: 40, suppressed: { consent_refused: 1 } })
  })

  it('refuses an invalid campaign and an event trigger with the field at fault, and keys without campaigns:write', async () => {
    const bad = await reach('bad', campaign({ channel: 'fax' }))
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues.map((i: { field: string }) => i.field)).toContain('channel')
    const onEvent = await reach('on-event', campaign({ schedule: { kind: 'event', steps: [{ event: { names: ['login'] } }], withinMinutes: 60 } }))
    expect(onEvent.statusCode).toBe(400)
    expect(onEvent.json().error.issues[0].field).toBe('schedule.kind')
    expect((await reach('draft', campaign(), keys.analyst)).statusCode).toBe(403)
  })
})
