import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { chDateTime } from '../core/time.js'
import type { Tenant } from '../tenants/tenants.service.js'
import { anotherServingProcess, seedDemoBank, serviceItem } from '../test/demo.js'
import { openTestApp, type TestApp } from '../test/app.js'
import type { Layout, LayoutService } from './layout.service.js'
import { buildModel } from './model.build.js'
import { shareLayoutCaps } from './layout.share.js'
import type { ProcessChannel } from '../core/cluster-locks.js'
import { isRelayed } from '../core/cluster-broadcast.js'

/**
 * Caps across model builds, and validity dates, on a small demo bank. A serving process counts
 * the capped items it served itself until a build has them: a build counts what was written
 * before it read, so a process that picks the build up keeps counting what came after.
 */

let t: TestApp
let bank: Tenant
let admin: string
let read: string
let customers: string[]

const service = serviceItem

beforeAll(async () => {
  t = await openTestApp()
  bank = await seedDemoBank(t, { customers: 300, days: 10, seed: 3 })
  admin = (await t.keys.issue(bank.id, { roles: ['admin'], holder: 'test admin' })).key
  read = (await t.keys.issue(bank.id, { roles: ['layout', 'analyst'], holder: 'test gateway' })).key
  const put = await t.app.inject({
    method: 'PUT',
    url: '/v1/layout/catalog',
    headers: { authorization: `Bearer ${admin}` },
    payload: { holdoutPerMille: 0, items: [service('svc.once', { cap: { perDay: 1 } }), service('svc.twice', { cap: { perDay: 2 } })] },
  })
  expect(put.statusCode, put.body).toBe(201)
  const rows = await t.engine.db.forTenant(bank.id).query(
    `SELECT customer_no AS no FROM customers FINAL WHERE tenant_id = {tenant:UInt16} AND deleted = 0 ORDER BY customer_key LIMIT 20`,
    {},
    z.object({ no: z.string() }),
  )
  customers = rows.map((r) => r.no)
}, 300_000)
afterAll(async () => t?.close())

/** A serving process of its own that writes its exposures only when told to. */
const servingProcess = () => anotherServingProcess(t, { flushMs: 3_600_000 })
/** A model build as of `asOf`, as the pipeline would make it (in whichever process). */
const buildAt = (asOf: Date) => buildModel({ db: t.engine.db.lane('pipeline'), catalogs: t.recommend.catalogs }, { tenant: bank, asOf, build: newRunId() })
const shows = async (p: LayoutService, customerId: string, item: string) =>
  (await p.layout({ tenantId: bank.id, customerId, screen: 'home', lang: 'en', mode: 'standard' })).modules.some((m) => m.items.some((i) => i.id === item))
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('caps across model builds', () => {
  it('a process that picks up a new build keeps counting what the build did not read, and does not count twice what it did', async () => {
    const p = await servingProcess()
    try {
      const [a, b, c] = customers as [string, string, string]
      // Served after the build's time: written, but not read by it.
      const asOf = new Date()
      await pause(5)
      expect(await shows(p, a, 'svc.once')).toBe(true)
      await p.flush()
      await buildAt(asOf)
      await p.reload(bank.id)
      expect(await shows(p, a, 'svc.once')).toBe(false)

      // Served before the build's time but still waiting to be written when it read.
      expect(await shows(p, b, 'svc.once')).toBe(true)
      await pause(5)
      await buildAt(new Date())
      await p.reload(bank.id)
      expect(await shows(p, b, 'svc.once')).toBe(false)
      expect(await shows(p, a, 'svc.once')).toBe(false)

      // Written before the build read: the build's count, not that and this process's again.
      expect(await shows(p, c, 'svc.twice')).toBe(true)
      // A write vouches for what was served before it began (the same millisecond may be in the next).
      await pause(5)
      await p.flush()
      await pause(5)
      await buildAt(new Date())
      await p.reload(bank.id)
      expect(await shows(p, c, 'svc.twice')).toBe(true)
      expect(await shows(p, c, 'svc.twice')).toBe(false)
      expect(await shows(p, b, 'svc.once')).toBe(false)
    } finally {
      await p.close()
    }
  })
})

/** Channels of serving processes linked through an engine process that relays as server/cluster.ts does. */
function relayed(n: number): ProcessChannel[] {
  const inboxes = Array.from({ length: n }, () => new Set<(m: unknown) => void>())
  return inboxes.map((mine, i) => ({
    send(m) {
      expect(isRelayed(m)).toBe(true)
      const wire = JSON.parse(JSON.stringify(m)) as unknown
      setImmediate(() => inboxes.forEach((inbox, j) => j !== i && inbox.forEach((l) => l(wire))))
    },
    onMessage(l) {
      mine.add(l)
      return () => mine.delete(l)
    },
  }))
}

describe('caps across serving processes', () => {
  it('an item capped at once a day, shown by one API process, is not shown again by another', async () => {
    const [p, q] = [await servingProcess(), await servingProcess()]
    const channels = relayed(2)
    const stops = [shareLayoutCaps(p, channels[0]!, 10), shareLayoutCaps(q, channels[1]!, 10)]
    try {
      const d = customers[5]!
      const items = async (sp: LayoutService) => (await sp.layout({ tenantId: bank.id, customerId: d, screen: 'home', lang: 'en', mode: 'standard' })).modules.flatMap((m) => m.items.map((i) => i.id))
      // Both hold the bank's snapshot before anything is served.
      expect(await shows(q, customers[6]!, 'svc.twice')).toBe(true)
      // Once a day and twice a day: one layout on one process shows both,
      expect(await items(p)).toEqual(expect.arrayContaining(['svc.once', 'svc.twice']))
      await pause(60)
      // the next, on the other, the twice-a-day one only,
      const second = await items(q)
      expect(second).toContain('svc.twice')
      expect(second).not.toContain('svc.once')
      await pause(60)
      // and then neither, on either.
      for (const sp of [p, q]) expect(await items(sp)).not.toContain('svc.twice')
      for (const sp of [p, q]) expect(await items(sp)).not.toContain('svc.once')
    } finally {
      stops.forEach((s) => s())
      await p.close()
      await q.close()
    }
  })

  it('without sharing, each process shows it once (what the sharing prevents)', async () => {
    const [p, q] = [await servingProcess(), await servingProcess()]
    try {
      const d = customers[7]!
      expect(await shows(p, d, 'svc.once')).toBe(true)
      await pause(60)
      expect(await shows(q, d, 'svc.once')).toBe(true)
    } finally {
      await p.close()
      await q.close()
    }
  })
})

describe('validity dates', () => {
  const put = (body: unknown) => t.app.inject({ method: 'PUT', url: '/v1/layout/catalog', headers: { authorization: `Bearer ${admin}` }, payload: body as object })

  it('refuses a date that is not on the calendar, naming the field', async () => {
    const current = (await t.app.inject({ url: '/v1/layout/catalog', headers: { authorization: `Bearer ${read}` } })).json().own.catalog
    const bad: [string, string][] = [['validTo', '2020-12-32'], ['validFrom', '2099-13-01'], ['validTo', '2026-11-31'], ['validFrom', '2027-02-29'], ['validTo', '0000-01-01']]
    for (const [field, value] of bad) {
      const res = await put({ ...current, items: [...current.items, service('svc.dated', { [field]: value })] })
      expect(res.statusCode, `${field} ${value}`).toBe(400)
      expect(res.json().error.code).toBe('VALIDATION_FAILED')
      expect(res.json().error.issues.map((i: { field: string }) => i.field), `${field} ${value}`).toContain(`items.${current.items.length}.${field}`)
    }
    const leap = await put({ ...current, items: [...current.items, service('svc.dated', { validFrom: '2028-02-29', validTo: '2028-03-31' })] })
    expect(leap.statusCode, leap.body).toBe(201)
  })

  it('an item saved before dates were checked, with one that is not on the calendar, is shown to no one; the catalogue still reads', async () => {
    const current = (await t.app.inject({ url: '/v1/layout/catalog', headers: { authorization: `Bearer ${read}` } })).json().own
    const doc = {
      ...current.catalog,
      items: [
        ...current.catalog.items.filter((i: { id: string }) => i.id !== 'svc.dated'),
        service('svc.bad_to', { validTo: '2020-12-32' }),
        service('svc.bad_from', { validFrom: '2099-13-01' }),
        service('svc.nov31', { validFrom: '2020-01-01', validTo: '2026-11-31' }),
        service('svc.fine', { validFrom: '2020-01-01', validTo: '2299-12-31' }),
      ],
    }
    await t.engine.db.forTenant(bank.id).insert('layout_catalogs', [
      { version: current.version + 1, document: JSON.stringify(doc), created_by: 'an earlier version', created_at: chDateTime(new Date()), change_note: '' },
    ])
    const got = await t.app.inject({ url: '/v1/layout/catalog', headers: { authorization: `Bearer ${read}` } })
    expect(got.statusCode, got.body).toBe(200)
    expect(got.json().own.catalog.items.find((i: { id: string }) => i.id === 'svc.bad_to')).toMatchObject({ validTo: '2020-12-32' })
    await t.recommend.layouts.reload(bank.id)
    const res = await t.app.inject({ url: `/v1/layout?customerId=${customers[10]}&mode=standard`, headers: { authorization: `Bearer ${read}` } })
    expect(res.statusCode, res.body).toBe(200)
    const ids = (res.json() as Layout).modules.flatMap((m) => m.items.map((i) => i.id))
    expect(ids).toContain('svc.fine')
    for (const id of ['svc.bad_to', 'svc.bad_from', 'svc.nov31']) expect(ids).not.toContain(id)
  })
})
