import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { campaign, openPushApp, seedBank, type PushFixture } from './push.fixture.js'

/**
 * The four-eyes rule against versions that only carry someone else's text on: a holder who wrote
 * a campaign's message cannot approve it once a colleague has merely paused and resumed it.
 */

let fx: PushFixture
let app: FastifyInstance
let t: number
const keys: Record<string, string> = {}
const auth = (key: string) => ({ authorization: `Bearer ${key}` })
const put = (id: string, body: object, key: string) => app.inject({ method: 'PUT', url: `/v1/push/campaigns/${id}`, headers: auth(key), payload: body })
const approve = (id: string, version: number, key: string) => app.inject({ method: 'POST', url: `/v1/push/campaigns/${id}/approval`, headers: auth(key), payload: { version } })

beforeAll(async () => {
  const opened = await openPushApp()
  fx = opened.fx
  app = opened.app
  t = await seedBank(fx, { slug: 'four-eyes', timeZone: 'Asia/Shanghai', prefix: 'FE', n: 3, loanDay: '2026-03-18', asOf: new Date() })
  for (const [name, holder] of [['li', 'Li Na'], ['wang', 'Wang Fang'], ['zhao', 'Zhao Lei']] as const) keys[name] = (await opened.keyService.issue(t, { roles: ['marketer'], holder })).key
}, 60_000)
afterAll(async () => {
  await app?.close()
  await fx?.close()
})

describe('approval', () => {
  it('refuses the author of the text after a colleague only paused and resumed it', async () => {
    const text = campaign({ message: { body: { zh: '限时专享 {{name}}', en: 'Just for you {{name}}' } } })
    expect((await put('flash', text, keys.li!)).statusCode).toBe(201)
    expect((await put('flash', { ...text, status: 'paused' }, keys.wang!)).json()).toMatchObject({ campaign: { version: 2 } })
    expect((await put('flash', text, keys.wang!)).json()).toMatchObject({ campaign: { version: 3, createdBy: 'Wang Fang' } })
    const self = await approve('flash', 3, keys.li!)
    expect(self.statusCode, self.body).toBe(403)
    expect(self.json().error).toMatchObject({ code: 'SELF_APPROVAL', issues: [{ field: 'holder' }] })
    // Wang made the version; a third holder approves Li's text.
    expect((await approve('flash', 3, keys.wang!)).json().error.code).toBe('SELF_APPROVAL')
    expect((await approve('flash', 3, keys.zhao!)).json()).toMatchObject({ status: 'approved', approvedBy: 'Zhao Lei' })
  })

  it('lets the approver of the text approve a version that only resumes it, and counts text changes since the last approval only', async () => {
    const text = campaign({ message: { body: { zh: '新品 {{name}}', en: 'New {{name}}' } } })
    await put('launch', text, keys.li!)
    expect((await approve('launch', 1, keys.wang!)).statusCode).toBe(200)
    await put('launch', { ...text, status: 'paused' }, keys.li!)
    await put('launch', text, keys.li!)
    expect((await approve('launch', 3, keys.li!)).json().error.code).toBe('SELF_APPROVAL')
    expect((await approve('launch', 3, keys.wang!)).json()).toMatchObject({ status: 'approved', version: 3 })
    // Zhao rewords it, Wang pauses and resumes: Zhao wrote the text and may not approve it.
    await put('launch', { ...text, name: 'launch, reworded' }, keys.zhao!)
    await put('launch', { ...text, name: 'launch, reworded', status: 'paused' }, keys.wang!)
    await put('launch', { ...text, name: 'launch, reworded' }, keys.wang!)
    expect((await approve('launch', 6, keys.zhao!)).json().error.code).toBe('SELF_APPROVAL')
    expect((await approve('launch', 6, keys.li!)).json()).toMatchObject({ status: 'approved', approvedBy: 'Li Na' })
  })
})
