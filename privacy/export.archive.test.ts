import type { Readable } from 'node:stream'
import { fromBufferPromise } from 'yauzl'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { streamArchive } from './export.archive.js'

/** The export as a ZIP: every section, every event once however many pages, nobody else's data. */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const C = 'Z0001'
const NEIGHBOUR = 'Z0002'
const GONE = 'Z0003'
const N = 105
const LAYOUTS = 20

async function collect(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** Every file of an archive by name, read with a ZIP reader other than the writer. */
async function unzip(buf: Buffer): Promise<Map<string, Buffer>> {
  const zip = await fromBufferPromise(buf)
  const files = new Map<string, Buffer>()
  for await (const entry of zip.eachEntry()) files.set(entry.fileName, await collect(await zip.openReadStreamPromise(entry)))
  return files
}

/** The message ids of every events file, in file order, and the records per file. */
function events(files: Map<string, Buffer>) {
  const names = [...files.keys()].filter((f) => f.startsWith('events/')).sort()
  const perFile = names.map((f) => files.get(f)!.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { message_id: string; timestamp: string; properties: unknown }))
  return { names, perFile, ids: perFile.flat().map((e) => e.message_id) }
}

beforeAll(async () => {
  t = await openTestApp()
  bank = await tenantWithKeys(t, 'archive-bank')
  const now = Date.now()
  // Three events share each time, so the pages' keyset must order by message id as well.
  const batch = [
    { type: 'identify', userId: C, anonymousId: 'anon-z', traits: { plan: 'gold' }, timestamp: new Date(now - 200_000).toISOString(), messageId: 'z-init' },
    ...Array.from({ length: N }, (_, i) => ({
      type: 'track',
      userId: C,
      event: 'viewed',
      properties: { i, note: 'line one\nline two' },
      timestamp: new Date(now - 100_000 + Math.floor(i / 3) * 1000).toISOString(),
      messageId: `z-${String(i).padStart(3, '0')}`,
    })),
    { type: 'identify', userId: NEIGHBOUR, anonymousId: 'anon-n', traits: { plan: 'basic' }, timestamp: new Date(now - 50_000).toISOString(), messageId: 'n-init' },
    { type: 'track', userId: NEIGHBOUR, event: 'viewed', timestamp: new Date(now - 50_000).toISOString(), messageId: 'n-1' },
    { type: 'track', userId: GONE, event: 'viewed', timestamp: new Date(now - 50_000).toISOString(), messageId: 'g-1' },
  ]
  const res = await t.app.inject({ method: 'POST', url: '/v1/batch', headers: auth(bank.write), payload: { batch } })
  expect(res.json().accepted, res.body).toBe(batch.length)
  // Home screens shown: 20 to the customer, three at a time in the same millisecond, and 2 to the neighbour.
  const db = t.engine.db.forTenant(bank.tenant.id)
  const keys = await db.query(`SELECT id_value, customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no'`, {}, z.object({ id_value: z.string(), k: z.coerce.number() }))
  const key = (no: string) => keys.find((r) => r.id_value === no)!.k
  const shown = (k: number, i: number, screen: string) => ({
    customer_key: k,
    served_at: new Date(now - 90_000 + Math.floor(i / 3)).toISOString().replace('T', ' ').replace('Z', ''),
    screen,
    experiment: '',
    variant: '',
    holdout: 0,
    elder: 0,
    model_build: 1,
    modules: ['hero'],
    items: [`item-${String(i).padStart(2, '0')}`],
  })
  await db.insert('layout_exposures', [...Array.from({ length: LAYOUTS }, (_, i) => shown(key(C), i, 'home')), shown(key(NEIGHBOUR), 0, 'neighbour-home'), shown(key(NEIGHBOUR), 1, 'neighbour-home')])
  const c = await t.app.inject({ method: 'PUT', url: `/v1/customers/${C}/consents`, headers: auth(bank.admin), payload: { purpose: 'marketing', channel: 'sms', granted: false, source: 'counter', noticeVersion: 'v2' } })
  expect(c.statusCode, c.body).toBe(200)
}, 120_000)
afterAll(async () => t?.close())

describe('the export archive', () => {
  it('holds every event and every home screen shown exactly once across many pages (and files), oldest first, with no empty file at an exact boundary', async () => {
    // 106 events in pages of 7: the boundary query finds 10 pages, then 5, then the open last page is empty.
    const files = await unzip(await collect(await t.privacy.exports.archive(bank.tenant.id, C, { pageRows: 7, fileRows: 21 })))
    const ev = events(files)
    expect(ev.ids).toHaveLength(N + 1)
    expect(new Set(ev.ids).size).toBe(N + 1)
    expect(ev.ids).toEqual(['z-init', ...Array.from({ length: N }, (_, i) => `z-${String(i).padStart(3, '0')}`)])
    expect(ev.perFile.map((f) => f.length)).toEqual([21, 21, 21, 21, 21, 1])
    expect(ev.names).toEqual([1, 2, 3, 4, 5, 6].map((n) => `events/events-00000${n}.ndjson`))
    const manifest = JSON.parse(files.get('manifest.json')!.toString('utf8'))
    expect(manifest.events).toEqual({ files: 6, records: N + 1 })
    // The stored JSON goes in as JSON: an escaped line break stays inside its string.
    expect(ev.perFile[0]![1]).toEqual(expect.objectContaining({ message_id: 'z-000', properties: { i: 0, note: 'line one\nline two' } }))

    // The layouts shown, also read in pages of 7 (a page takes every exposure of its last millisecond).
    const layouts = JSON.parse(files.get('layouts.json')!.toString('utf8'))
    expect(layouts.sections.layouts.rows.map((r: { items: string[] }) => r.items[0])).toEqual(Array.from({ length: LAYOUTS }, (_, i) => `item-${String(i).padStart(2, '0')}`))
    expect(layouts.sections.layouts.fields.served_at).toEqual({ zh: '展示时间', en: 'shown at' })
    expect(manifest.files).toContainEqual({ file: 'layouts.json', records: LAYOUTS })

    // A byte bound ends a file at the next page boundary.
    const small = events(await unzip(await collect(await t.privacy.exports.archive(bank.tenant.id, C, { pageRows: 7, fileRows: 1000, fileBytes: 1 }))))
    expect(small.perFile.map((f) => f.length)).toEqual([...Array(15).fill(7), 1])
    expect(small.ids).toEqual(ev.ids)
  })

  it('ends the stream with the error when a page fails half-way (yazl does not pass errors on), instead of hanging or closing a ZIP', async () => {
    const real = t.engine.db.forTenant(bank.tenant.id)
    const ids = await real.query(`SELECT customer_key AS k FROM identities FINAL WHERE tenant_id = {tenant:UInt16} AND id_kind = 'customer_no' AND id_value = {no:String}`, { no: C }, z.object({ k: z.coerce.number() }))
    // The real engine, whose third page read fails.
    let pages = 0
    const failing = Object.create(real) as TenantDb
    failing.stream = async (sql, params) => {
      if (sql.includes('FORMAT TabSeparatedRaw') && ++pages === 3) throw new Error('engine gone')
      return real.stream(sql, params)
    }
    const labels = { sections: {}, fields: {} }
    const s = streamArchive({ db: failing, ks: ids.map((r) => r.k), customerNo: C, sections: {}, labels, pageRows: 7, fileRows: 21 })
    await expect(collect(s)).rejects.toThrow('engine gone')
    expect(pages).toBe(3)
  })

  it('GET ?format=zip (or Accept: application/zip) streams README.txt, every section and the events, and nothing of a neighbour', async () => {
    const res = await t.app.inject({ url: `/v1/customers/${C}/export?format=zip`, headers: auth(bank.admin) })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['content-type']).toBe('application/zip')
    expect(res.headers['content-disposition']).toBe(`attachment; filename="customer-${C}-export.zip"`)
    const files = await unzip(res.rawPayload)
    expect([...files.keys()].sort()).toEqual(
      ['README.txt', 'banking.json', 'consents.json', 'events/events-000001.ndjson', 'identities.json', 'layouts.json', 'manifest.json', 'profile.json', 'pushes.json', 'recommendations.json', 'segments.json', 'tags.json'].sort(),
    )
    const readme = files.get('README.txt')!.toString('utf8')
    expect(readme.startsWith('\ufeff')).toBe(true)
    expect(readme).toContain('\r\n')
    expect(readme).toContain('notice_version: 隐私政策版本')
    expect(readme).toContain('notice_version: privacy notice version')
    const json = (name: string) => JSON.parse(files.get(name)!.toString('utf8'))
    expect(json('profile.json').sections.traits.rows).toEqual([expect.objectContaining({ trait: 'plan', value: 'gold' })])
    expect(json('profile.json').sections.traits.fields.trait).toEqual({ zh: '属性', en: 'trait' })
    expect(json('consents.json').sections.consentHistory.rows).toEqual([expect.objectContaining({ purpose: 'marketing', granted: 0, notice_version: 'v2' })])
    expect(json('identities.json').sections.identities.rows.map((r: { id_value: string }) => r.id_value).sort()).toEqual([C, 'anon-z'])
    for (const f of ['tags.json', 'segments.json', 'pushes.json', 'layouts.json']) expect(json(f).customer_no).toBe(C)
    const ev = events(files)
    expect(ev.ids).toHaveLength(N + 1)
    const all = [...files.values()].map((b) => b.toString('utf8')).join('\n')
    for (const other of [NEIGHBOUR, 'anon-n', 'n-init', 'n-1', 'g-1', 'basic', 'neighbour-home']) expect(all).not.toContain(other)
    expect(json('layouts.json').sections.layouts.rows).toHaveLength(LAYOUTS)

    const byAccept = await t.app.inject({ url: `/v1/customers/${C}/export`, headers: { ...auth(bank.admin), accept: 'application/zip' } })
    expect(byAccept.headers['content-type']).toBe('application/zip')
    expect(events(await unzip(byAccept.rawPayload)).ids).toEqual(ev.ids)
    // The JSON form is unchanged.
    const page = (await t.app.inject({ url: `/v1/customers/${C}/export?limit=2`, headers: auth(bank.admin) })).json()
    expect(page.events.rows.map((e: { message_id: string }) => e.message_id)).toEqual(['z-104', 'z-103'])
  })

  it('the JSON form pages through the same events, newest first, each once, where times are shared', async () => {
    const ids: string[] = []
    let after = ''
    for (let i = 0; i < 20; i++) {
      const page = (await t.app.inject({ url: `/v1/customers/${C}/export?limit=7${after}`, headers: auth(bank.admin) })).json()
      ids.push(...page.events.rows.map((e: { message_id: string }) => e.message_id))
      if (!page.events.next) break
      after = `&after=${page.events.next}`
    }
    const archived = events(await unzip(await collect(await t.privacy.exports.archive(bank.tenant.id, C)))).ids
    expect(ids).toEqual([...archived].reverse())
  })

  it('refuses a cursor with the archive (400 naming after), an unknown customer (404), an erased one (410), and audits each with its format', async () => {
    const bad = await t.app.inject({ url: `/v1/customers/${C}/export?format=zip&after=abc`, headers: auth(bank.admin) })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().error.issues[0].field).toBe('after')
    expect((await t.app.inject({ url: `/v1/customers/${C}/export?format=tar`, headers: auth(bank.admin) })).statusCode).toBe(400)
    expect((await t.app.inject({ url: '/v1/customers/NOPE/export?format=zip', headers: auth(bank.admin) })).statusCode).toBe(404)
    expect((await t.app.inject({ url: `/v1/customers/${C}/export?format=zip`, headers: auth(bank.write) })).statusCode).toBe(403)

    const started = await t.app.inject({ method: 'POST', url: `/v1/customers/${GONE}/erasure`, headers: auth(bank.admin), payload: { reason: 'customer request' } })
    expect(started.statusCode, started.body).toBe(202)
    await t.privacy.erasure.idle()
    const gone = await t.app.inject({ url: `/v1/customers/${GONE}/export?format=zip`, headers: auth(bank.admin) })
    expect(gone.statusCode).toBe(410)
    expect(gone.json().error.code).toBe('CUSTOMER_ERASED')

    const rows = await t.engine.db
      .forTenant(bank.tenant.id)
      .query(
        `SELECT customer_no, status, JSONExtractString(detail, 'format') AS format FROM audit_log WHERE tenant_id = {tenant:UInt16} AND action = 'customer.export'`,
        {},
        z.object({ customer_no: z.string(), status: z.coerce.number(), format: z.string() }),
      )
    const seen = (no: string, status: number, format: string) => rows.filter((r) => r.customer_no === no && r.status === status && r.format === format).length
    expect(seen(C, 200, 'zip')).toBe(2)
    expect(seen(C, 200, 'json')).toBe(1 + 16) // one page above, 16 pages of 7 in the paging test
    expect(seen(C, 400, 'zip')).toBe(1)
    expect(rows.some((r) => r.customer_no.startsWith('erased:') && r.status === 410 && r.format === 'zip')).toBe(true)
    expect(rows.some((r) => r.customer_no === GONE)).toBe(false)
  })
})
