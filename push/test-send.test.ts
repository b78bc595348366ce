import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, no, openPushApp, seedBank, type PushFixture } from './push.fixture.js'

/**
 * Test sends kept apart from one another: each send's targets have their own stored row key, so
 * a replacing merge of push_targets cannot fold a second test send to a member into the first
 * one before it was pulled.
 */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const post = (url: string, body: object, key: string) => app.inject({ method: 'POST', url, headers: auth(key), payload: body })

beforeAll(async () => {
  const opened = await openPushApp()
  fx = opened.fx
  app = opened.app
  // Marketing push granted to customers 1..10 (push.fixture.ts).
  t = await seedBank(fx, { slug: 'test-send-bank', timeZone: 'Asia/Shanghai', prefix: 'TS', n: 4, loanDay: '2026-03-18', asOf: new Date() })
  keys.li = (await opened.keyService.issue(t, { roles: ['marketer'], holder: 'Li Na' })).key
  keys.push = (await opened.keyService.issue(t, { roles: ['push'], holder: 'notification service' })).key
  await fx.push.policies.save(t, { quietHours: null }, 'test')
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('two test sends the same day', () => {
  it('hands out both messages to the member, even after the targets’ table merged', async () => {
    const list = await app.inject({ method: 'PUT', url: '/v1/push/test-lists/phones', headers: auth(keys.li!), payload: { name: 'phones', members: [{ customerNo: no('TS', 2), label: 'Li' }] } })
    expect(list.statusCode, list.body).toBe(200)
    const put = await app.inject({ method: 'PUT', url: '/v1/push/campaigns/spring', headers: auth(keys.li!), payload: campaign({ status: 'paused', schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() } }) })
    expect(put.statusCode, put.body).toBe(201)

    const first = (await post('/v1/push/campaigns/spring/test', { list: 'phones' }, keys.li!)).json()
    const second = (await post('/v1/push/campaigns/spring/test', { list: 'phones' }, keys.li!)).json()
    expect(first.queued).toHaveLength(1)
    expect(second.queued).toHaveLength(1)
    expect(first.sendId).not.toBe(second.sendId)

    // Neither was pulled yet: a merge now must keep both rows.
    await fx.engine.db.system.command('OPTIMIZE TABLE push_targets FINAL')
    const pulled = (await post('/v1/push/pull', { limit: 100, leaseSeconds: 60 }, keys.push!)).json().targets as { campaignId: string; targetId: string; test: boolean }[]
    expect(pulled.map((p) => p.targetId).sort()).toEqual([first.queued[0].targetId, second.queued[0].targetId].sort())
    expect(pulled.every((p) => p.campaignId === 'spring' && p.test)).toBe(true)
  })
})
