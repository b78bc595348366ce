import { expect } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { runTags } from '../tags/tag.pipeline.js'
import { createTagRepository } from '../tags/tag.repository.js'
import type { TagDefinition } from '../tags/tag.schema.js'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createTenantService } from '../tenants/tenants.service.js'
import { createBitmapStore, type BitmapStore } from './bitmap.store.js'
import { loadRoaring } from './roaring.js'
import { compileSegment, prepare } from './segment.compile.js'
import { compileReference } from './segment.reference.js'
import { evaluateInMemory, onlyTagLeaves } from './segment.memory.js'
import { parseSegment } from './segment.schema.js'
import { localEvent, testTagDef } from '../test/fixtures.js'

/**
 * A tenant whose tag values follow formulas of the customer key k (1..150; 150 is deleted, so
 * the universe is 1..149), run as of 2026-03-15T04:00Z (local date 2026-03-15 in Shanghai):
 *
 * - score (number, >64 values: bucketed): k, absent when k % 10 = 0;
 * - small (number, exact bitmaps): k % 5;
 * - flag (boolean): k % 3 = 0;
 * - tier (enum gold/silver/bronze): by k % 3 (0 gold, 1 silver, 2 bronze), absent when k % 7 = 0;
 * - kinds (list): 'even' when k % 2 = 0, 'three' when k % 3 = 0, absent when neither;
 * - birth (date, bucketed): 2026-01-01 + k days for k <= 100;
 * - views_30d (window count, absent = 0): (k % 5) + 1 for k % 4 = 1, else absent;
 * - risky (boolean, purpose risk only): k % 11 = 0.
 *
 * Events: k % 4 = 1 viewed a product (k % 5) + 1 times on 2026-03-10 (page p0/p1 alternating);
 * k % 4 = 1 and k % 3 = 0 purchased on 2026-03-12 (amount k); k % 6 = 0 logged in on 2026-02-01.
 */

export const TZ = 'Asia/Shanghai'
export const AS_OF = new Date('2026-03-15T04:00:00Z')
const OLD = '2020-01-01 00:00:00.000'
export const N = 150
export const UNIVERSE = Array.from({ length: N - 1 }, (_, i) => i + 1)
export const keys = (f: (k: number) => boolean) => UNIVERSE.filter(f)

const event = (k: number, local: string, name: string, props: Record<string, unknown> = {}) => localEvent(k, local, name, props)
const def = (name: string, type: string, rule: Record<string, unknown>, extra: Record<string, unknown> = {}) => testTagDef(name, type, rule, extra, ['service', 'marketing'])
const sqlTag = (name: string, type: string, sql: string, extra: Record<string, unknown> = {}) => def(name, type, { kind: 'sql', sql }, extra)


export interface Fixture {
  engine: TestEngine
  tenant: number
  defs: Map<string, TagDefinition>
  opts: { defs: Map<string, TagDefinition>; asOf: Date; timeZone: string }
  /** In-memory bitmaps (undefined where the optional roaring package is not installed). */
  store: BitmapStore | undefined
}

export async function setupFixture(): Promise<Fixture> {
  const engine = await openTestEngine()
  const tenants = createTenantService({ system: engine.db.system, defaultTimeZone: 'UTC' })
  const tenant = (await tenants.create({ slug: 'seg-a', name: 'A', timeZone: TZ })).id
  const repo = createTagRepository({ db: engine.db })
  const db = engine.db.forTenant(tenant)
  const all = Array.from({ length: N }, (_, i) => i + 1)
  await db.insert('customers', all.map((k) => ({ customer_key: k, customer_no: `C${k}`, gender: 'unknown', birth_date: null, opened_at: OLD, updated_at: OLD })))
  await db.insert('customers', [{ customer_key: N, customer_no: `C${N}`, gender: 'unknown', birth_date: null, opened_at: OLD, updated_at: '2021-01-01 00:00:00.000', deleted: 1 }])
  const events = []
  for (const k of all) {
    if (k % 4 === 1) for (let i = 0; i <= k % 5; i++) events.push(event(k, `2026-03-10 0${i}:00`, 'product_viewed', { page: `p${i % 2}` }))
    if (k % 4 === 1 && k % 3 === 0) events.push(event(k, '2026-03-12 10:00', 'purchase', { amount: k }))
    if (k % 6 === 0) events.push(event(k, '2026-02-01 10:00', 'login'))
  }
  await db.insert('events', events)
  const defs = [
    sqlTag('score', 'number', 'SELECT customer_key, toFloat64(customer_key) AS value FROM $customers WHERE customer_key % 10 != 0'),
    sqlTag('small', 'number', 'SELECT customer_key, toFloat64(customer_key % 5) AS value FROM $customers'),
    sqlTag('flag', 'boolean', 'SELECT customer_key, toUInt8(customer_key % 3 = 0) AS value FROM $customers'),
    sqlTag('tier', 'enum', `SELECT customer_key, if(customer_key % 7 = 0, 'none', ['gold', 'silver', 'bronze'][customer_key % 3 + 1]) AS value FROM $customers`, {
      values: ['gold', 'silver', 'bronze'],
    }),
    sqlTag('kinds', 'string_list', `SELECT customer_key, arrayFilter(x -> x != '', [if(customer_key % 2 = 0, 'even', ''), if(customer_key % 3 = 0, 'three', '')]) AS value FROM $customers`),
    sqlTag('birth', 'date', `SELECT customer_key, toDate32('2026-01-01') + customer_key AS value FROM $customers WHERE customer_key <= 100`),
    def('views_30d', 'number', { kind: 'window', events: ['product_viewed'], measure: 'count', days: 30 }),
    sqlTag('risky', 'boolean', 'SELECT customer_key, toUInt8(customer_key % 11 = 0) AS value FROM $customers', { purpose: ['risk'] }),
  ]
  for (const d of defs) await repo.save(tenant, d, 'test')
  const stored = await repo.list(tenant)
  await runTags({ db: engine.db }, { tenantId: tenant, timeZone: TZ, defs: stored, mode: 'full', asOf: AS_OF, runId: newRunId() })
  const byName = new Map<string, TagDefinition>(stored.map((t) => [t.name, t]))
  const roaring = await loadRoaring()
  const store = roaring && createBitmapStore({ roaring, maxBytes: 64 * 1024 ** 2, freshMs: 0 })
  return { engine, tenant, defs: byName, opts: { defs: byName, asOf: AS_OF, timeZone: TZ }, store }
}

const keysRow = z.object({ keys: z.array(z.coerce.number()) })

/** Members by the bitmap path, the reference path and (tag-only trees) from memory, checked equal. */
export async function members(fx: Fixture, rule: unknown, purpose = 'marketing'): Promise<number[]> {
  const seg = parseSegment({ purpose, rule })
  const db = fx.engine.db.forTenant(fx.tenant)
  const c = compileSegment(seg, fx.opts)
  const [bm] = await db.query(`SELECT arraySort(bitmapToArray(seg)) AS keys FROM (${c.sql})`, c.params, keysRow)
  const r = compileReference(seg, fx.opts)
  const [ref] = await db.query(r.sql, r.params, keysRow)
  expect(bm!.keys, `bitmap path == reference path for ${JSON.stringify(rule)}`).toEqual(ref!.keys)
  if (fx.store && onlyTagLeaves(seg.rule)) {
    const { tags } = prepare(seg.rule, { ...fx.opts, purpose: seg.purpose })
    const snap = await fx.store.snapshot(db, [...tags.values()].map((c) => c.leaf.tag))
    const mem = await evaluateInMemory(seg.rule, tags, snap)
    expect([...mem.toUint32Array()], `memory path == reference path for ${JSON.stringify(rule)}`).toEqual(ref!.keys)
  }
  return bm!.keys
}
