import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { tableFromIPC } from 'apache-arrow'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AS_OF, keys, setupFixture, TZ, type Fixture } from './segment.fixture.js'
import { materializeSegment } from './segment.materialize.js'
import { customerSegments, exportSegment, members } from './segment.members.js'
import { createSegmentRepository } from './segment.repository.js'

/** Reading materialized segments: pages by key, segments of a customer, exports. */

let fx: Fixture
let db: TenantDb
let repo: ReturnType<typeof createSegmentRepository>

const THREE = keys((k) => k % 3 === 0)
const ONE = keys((k) => k % 5 === 1) // 30 members: a small set in the engine's bitmap
const GOLD = keys((k) => k % 3 === 0 && k % 7 !== 0)

beforeAll(async () => {
  fx = await setupFixture()
  db = fx.engine.db.forTenant(fx.tenant)
  repo = createSegmentRepository({ db: fx.engine.db })
  const rules: [string, unknown][] = [
    ['three', { tag: 'kinds', op: 'eq', value: 'three' }],
    ['one', { tag: 'small', op: 'eq', value: 1 }],
    ['gold', { tag: 'tier', op: 'eq', value: 'gold' }],
  ]
  let build = 100
  for (const [id, rule] of rules) {
    const { segment } = await repo.save(fx.tenant, id, { name: id, purpose: 'marketing', rule }, 'test')
    await materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf: AS_OF, build: String(++build), trigger: 'manual' })
  }
  // A newer build of `three` is the current one: page from it, not from the first.
  const three = await repo.get(fx.tenant, 'three')
  await materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment: three, defs: fx.defs, asOf: AS_OF, build: '200', trigger: 'manual' })
})
afterAll(async () => fx?.engine.close())

async function allPages(id: string, limit: number) {
  const out: number[] = []
  const pages: number[][] = []
  let cursor: number | undefined
  for (let i = 0; i < 1000; i++) {
    const p = await members(db, id, cursor === undefined ? { limit } : { cursor, limit })
    pages.push(p.keys)
    out.push(...p.keys)
    if (p.nextCursor === null) break
    expect(p.nextCursor).toBe(p.keys[p.keys.length - 1])
    cursor = p.nextCursor
  }
  return { out, pages }
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array))
  return Buffer.concat(chunks)
}

describe('members', () => {
  it('pages cover every member once, in order, from the current build', async () => {
    for (const [id, expected] of [['three', THREE], ['one', ONE], ['gold', GOLD]] as const) {
      for (const limit of [1, 4, 7, expected.length - 1, expected.length, expected.length + 1, 10_000]) {
        const { out, pages } = await allPages(id, limit)
        expect(out, `${id} by ${limit}`).toEqual(expected)
        expect(pages.length, `${id} by ${limit}`).toBe(Math.max(1, Math.ceil(expected.length / limit)))
        for (const p of pages.slice(0, -1)) expect(p).toHaveLength(limit)
      }
    }
    const first = await members(db, 'three', { limit: 5 })
    expect(first).toEqual({ keys: THREE.slice(0, 5), nextCursor: THREE[4], build: '200', size: THREE.length })
  })

  it('starts after any cursor, member or not', async () => {
    expect((await members(db, 'one', { cursor: 12, limit: 3 })).keys).toEqual([16, 21, 26])
    expect((await members(db, 'one', { cursor: 11, limit: 3 })).keys).toEqual([16, 21, 26])
    expect(await members(db, 'one', { cursor: 146, limit: 3 })).toMatchObject({ keys: [], nextCursor: null })
  })

  it('refuses bad limits and cursors; an unmaterialized segment is NOT_FOUND', async () => {
    for (const limit of [0, 10_001, 1.5]) await expect(members(db, 'one', { limit })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(members(db, 'one', { cursor: -1, limit: 5 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
    await expect(members(db, 'nope', { limit: 5 })).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })
})

describe('exportSegment', () => {
  it('csv: a header and one row per member, key and customer number only', async () => {
    const text = (await readAll(await exportSegment(fx.engine.db.forTenant(fx.tenant), 'gold', 'csv'))).toString('utf8')
    const lines = text.trimEnd().split('\n')
    expect(lines[0]).toBe('"customer_key","customer_no"')
    expect(lines.slice(1)).toEqual(GOLD.map((k) => `${k},"C${k}"`))
  })

  it('csv in pages of key ranges: the same bytes as one page, the header once', async () => {
    const tdb = fx.engine.db.forTenant(fx.tenant)
    const whole = (await readAll(await exportSegment(tdb, 'three', 'csv'))).toString('utf8')
    for (const pageKeys of [1, 7, 50]) {
      expect((await readAll(await exportSegment(tdb, 'three', 'csv', { pageKeys }))).toString('utf8'), `pages of ${pageKeys}`).toBe(whole)
    }
    expect(whole.trimEnd().split('\n')).toHaveLength(THREE.length + 1)
    await expect(exportSegment(tdb, 'three', 'csv', { pageKeys: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' })
  })

  it('csv of an empty segment: the header alone', async () => {
    const { segment } = await repo.save(fx.tenant, 'nobody', { name: 'nobody', purpose: 'marketing', rule: { all: [{ tag: 'tier', op: 'eq', value: 'gold' }, { tag: 'tier', op: 'eq', value: 'silver' }] } }, 'test')
    await materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf: AS_OF, build: '300', trigger: 'manual' })
    const text = (await readAll(await exportSegment(fx.engine.db.forTenant(fx.tenant), 'nobody', 'csv'))).toString('utf8')
    expect(text).toBe('"customer_key","customer_no"\n')
  })

  it('arrow in pages of key ranges: one stream with every member, in order, whatever the page size', async () => {
    const tdb = fx.engine.db.forTenant(fx.tenant)
    for (const pageKeys of [1, 7, 50, 1_000_000]) {
      const t = tableFromIPC(await readAll(await exportSegment(tdb, 'three', 'arrow', { pageKeys })))
      expect(t.numRows, `pages of ${pageKeys}`).toBe(THREE.length)
      expect(Array.from(t.getChild('customer_key')!.toArray() as Uint32Array)).toEqual(THREE)
      expect(t.getChild('customer_no')!.toArray()).toEqual(THREE.map((k) => `C${k}`))
    }
    // The engine reads the joined stream back too.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seg-export-'))
    try {
      const file = path.join(dir, 'three.arrows')
      fs.writeFileSync(file, await readAll(await exportSegment(tdb, 'three', 'arrow', { pageKeys: 7 })))
      const [r] = await fx.engine.db.system.query(
        `SELECT count() AS n, arraySort(groupArray(toUInt32(customer_key))) AS k FROM file({file:String}, 'ArrowStream')`,
        { file },
        z.object({ n: z.coerce.number(), k: z.array(z.coerce.number()) }),
      )
      expect(r).toEqual({ n: THREE.length, k: THREE })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('arrow of an empty segment: the schema and no rows', async () => {
    await repo.save(fx.tenant, 'nobody2', { name: 'nobody2', purpose: 'marketing', rule: { all: [{ tag: 'tier', op: 'eq', value: 'gold' }, { tag: 'tier', op: 'eq', value: 'silver' }] } }, 'test')
    const segment = await repo.get(fx.tenant, 'nobody2')
    await materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf: AS_OF, build: '301', trigger: 'manual' })
    const t = tableFromIPC(await readAll(await exportSegment(fx.engine.db.forTenant(fx.tenant), 'nobody2', 'arrow')))
    expect(t.numRows).toBe(0)
    expect(t.schema.fields.map((f) => f.name)).toEqual(['customer_key', 'customer_no'])
  })

  it('arrow: an IPC table readable by apache-arrow', async () => {
    const buf = await readAll(await exportSegment(fx.engine.db.forTenant(fx.tenant), 'three', 'arrow'))
    const t = tableFromIPC(buf)
    expect(t.numRows).toBe(THREE.length)
    expect(t.schema.fields.map((f) => f.name)).toEqual(['customer_key', 'customer_no'])
    expect(Array.from(t.getChild('customer_key')!.toArray() as Uint32Array)).toEqual(THREE)
    expect(t.getChild('customer_no')!.toArray()).toEqual(THREE.map((k) => `C${k}`))
  })

  it('parquet: a PAR1 file the engine reads back', async () => {
    const buf = await readAll(await exportSegment(fx.engine.db.forTenant(fx.tenant), 'one', 'parquet'))
    expect(buf.subarray(0, 4).toString('latin1')).toBe('PAR1')
    expect(buf.subarray(-4).toString('latin1')).toBe('PAR1')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seg-export-'))
    try {
      const file = path.join(dir, 'one.parquet')
      fs.writeFileSync(file, buf)
      const [r] = await fx.engine.db.system.query(
        `SELECT count() AS n, arraySort(groupArray(toUInt32(customer_key))) AS k, arraySort(groupArray(toString(customer_no))) AS no FROM file({file:String}, 'Parquet')`,
        { file },
        z.object({ n: z.coerce.number(), k: z.array(z.coerce.number()), no: z.array(z.string()) }),
      )
      expect(r).toEqual({ n: ONE.length, k: ONE, no: ONE.map((k) => `C${k}`).sort() })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('an unmaterialized segment is NOT_FOUND', async () => {
    await expect(exportSegment(fx.engine.db.forTenant(fx.tenant), 'nope', 'csv')).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })
})

describe('customerSegments', () => {
  it('the segments whose current build holds the key; retired ones are left out', async () => {
    expect(await customerSegments(db, 6)).toEqual(['gold', 'one', 'three'])
    expect(await customerSegments(db, 21)).toEqual(['one', 'three'])
    expect(await customerSegments(db, 1)).toEqual(['one'])
    expect(await customerSegments(db, 2)).toEqual([])
    expect(await customerSegments(db, 150)).toEqual([])
    await repo.retire(fx.tenant, 'three', 'test')
    expect(await customerSegments(db, 6)).toEqual(['gold', 'one'])
  })
})
