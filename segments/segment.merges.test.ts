import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { chDateTime } from '../core/time.js'
import { createIdentityService, type IdentityService } from '../ingest/identity.service.js'
import { createKeyAllocator } from '../ingest/key-allocator.js'
import { AS_OF, keys, setupFixture, TZ, type Fixture } from './segment.fixture.js'
import { compileSegment, prepare } from './segment.compile.js'
import { compileReference } from './segment.reference.js'
import { evaluateInMemory } from './segment.memory.js'
import { materializeSegment } from './segment.materialize.js'
import { members } from './segment.members.js'
import { preview } from './segment.preview.js'
import { createSegmentRepository, type SavedSegment } from './segment.repository.js'
import { parseSegment } from './segment.schema.js'

/**
 * Segments count people: a customer merged into another is its survivor in every build and
 * count (the survivor is a member when either key holds the condition), and is a customer of its
 * own again in the first build after the merge is undone.
 */

let fx: Fixture
let db: TenantDb
let ids: IdentityService
beforeAll(async () => {
  fx = await setupFixture()
  db = fx.engine.db.forTenant(fx.tenant)
  ids = createIdentityService({ db: fx.engine.db, allocator: createKeyAllocator({ system: fx.engine.db.system }) })
  const at = chDateTime(new Date('2026-01-01T00:00:00Z'))
  await db.insert('identities', [3, 4, 6, 9].map((k) => ({ id_kind: 'customer_no', id_value: `C${k}`, customer_key: k, source: 'test', created_at: at, updated_at: at })))
})
afterAll(async () => fx?.engine.close())

const admin = { id: 'Li Wei', reason: 'same person' }
const FLAG = { tag: 'flag', op: 'eq', value: true }
const THREE = keys((k) => k % 3 === 0)
const run = (segment: SavedSegment, build: string) =>
  materializeSegment({ db: fx.engine.db }, { tenantId: fx.tenant, timeZone: TZ, segment, defs: fx.defs, asOf: AS_OF, build, trigger: 'manual' })
const page = async (sid: string) => (await members(db, sid, { limit: 1000 })).keys
const keysRow = z.object({ keys: z.array(z.coerce.number()) })

describe('materialized segments of merged customers', () => {
  it('hold each person once, by the survivor, and hold the customer again after the undo', async () => {
    const s = (await createSegmentRepository({ db: fx.engine.db }).save(fx.tenant, 'flagged', { name: 'flagged', purpose: 'marketing', rule: FLAG }, 'test')).segment
    expect(await run(s, '1000')).toMatchObject({ size: THREE.length })
    // 3 holds the condition, 4 does not: the person holds it. 6 and 9 both do: one person.
    const a = await ids.merge(fx.tenant, 'C3', 'C4', admin)
    const b = await ids.merge(fx.tenant, 'C6', 'C9', admin)
    const merged = [...THREE.filter((k) => k !== 3 && k !== 6), 4].sort((x, y) => x - y)
    expect(await run(s, '2000')).toMatchObject({ size: merged.length, entered: 1, exited: 2 })
    expect(await page('flagged')).toEqual(merged)

    // The preview counts the same people, out of the customers who are not merged away.
    const p = await preview(db, parseSegment({ purpose: 'marketing', rule: FLAG }), fx.opts)
    expect({ count: p.count, total: p.total }).toEqual({ count: merged.length, total: 149 - 2 })
    // The reference path agrees with the bitmap path.
    const c = compileSegment(parseSegment({ purpose: 'marketing', rule: { not: FLAG } }), fx.opts)
    const [bm] = await db.query(`SELECT arraySort(bitmapToArray(seg)) AS keys FROM (${c.sql})`, c.params, keysRow)
    const r = compileReference(parseSegment({ purpose: 'marketing', rule: { not: FLAG } }), fx.opts)
    const [ref] = await db.query(r.sql, r.params, keysRow)
    expect(bm!.keys).toEqual(ref!.keys)
    expect(bm!.keys.filter((k) => [3, 4, 6, 9].includes(k))).toEqual([4])

    await ids.undo(fx.tenant, a!.changeId, 'Li Wei')
    await ids.undo(fx.tenant, b!.changeId, 'Li Wei')
    expect(await run(s, '3000')).toMatchObject({ size: THREE.length, entered: 2, exited: 1 })
    expect(await page('flagged')).toEqual(THREE)
  })

  it('leaves the customers merged away out of the in-memory universe, until the undo', async () => {
    if (!fx.store) throw new Error('the optional "roaring" package is not installed: the in-memory universe cannot be tested')
    const size = async () => (await fx.store!.snapshot(db, ['flag'])).universe
    expect((await size()).size).toBe(149)
    const m = await ids.merge(fx.tenant, 'C3', 'C4', admin)
    const u = await size()
    expect([u.size, u.has(3), u.has(4)]).toEqual([148, false, true])
    await ids.undo(fx.tenant, m!.changeId, 'Li Wei')
    expect((await size()).has(3)).toBe(true)
  })

  it('counts in memory the people the engine counts: a survivor holds what a key merged into it holds', async () => {
    if (!fx.store) throw new Error('the optional "roaring" package is not installed: the in-memory path cannot be tested')
    const inMemory = async (rule: object) => {
      const seg = parseSegment({ purpose: 'marketing', rule })
      const { tags } = prepare(seg.rule, { ...fx.opts, purpose: seg.purpose })
      const snap = await fx.store!.snapshot(db, ['flag'])
      return [...(await evaluateInMemory(seg.rule, tags, snap)).toUint32Array()]
    }
    const inEngine = async (rule: object) => {
      const c = compileSegment(parseSegment({ purpose: 'marketing', rule }), fx.opts)
      const [row] = await db.query(`SELECT arraySort(bitmapToArray(seg)) AS keys FROM (${c.sql})`, c.params, keysRow)
      return row!.keys
    }
    // 3 holds the flag and 4 does not; 6 and 9 both hold it.
    const a = await ids.merge(fx.tenant, 'C3', 'C4', admin)
    const b = await ids.merge(fx.tenant, 'C6', 'C9', admin)
    for (const rule of [FLAG, { not: FLAG }, { any: [FLAG, { not: FLAG }] }]) {
      const mem = await inMemory(rule)
      expect(mem).toEqual(await inEngine(rule))
      expect(mem.filter((k) => [3, 6].includes(k))).toEqual([])
    }
    expect((await inMemory(FLAG)).filter((k) => [4, 9].includes(k))).toEqual([4, 9])
    await ids.undo(fx.tenant, a!.changeId, 'Li Wei')
    await ids.undo(fx.tenant, b!.changeId, 'Li Wei')
    expect(await inMemory(FLAG)).toEqual(THREE)
  })
})
