import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { chEpoch } from '../core/time.js'
import { tsvRows } from '../core/tsv.js'
import { ExposureLog, type Exposure } from './exposure.log.js'
import { item, snapshot } from './layout.fixture.js'
import type { RankedModule } from './layout.rank.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/** The log's bytes are exactly what the generic row encoder writes for the same rows. */

const AWKWARD = ["it's", 'tab\there', 'back\\slash', '中文', 'line\nbreak', "q'\\'"]

function fixture() {
  const items = AWKWARD.map((id, i) => item(i, `${id}-${i}`, `m${i % 2}`))
  const s = snapshot(items, [{ id: `mod'${AWKWARD[1]}` }, { id: '模块\\' }], { build: '77' })
  const ranked = (pick: number[]): RankedModule[] =>
    s.modules.map((m, j) => ({
      module: m,
      reason: undefined as never,
      items: pick.filter((i) => i % 2 === j).map((i) => ({ item: items[i]!, score: 1, reason: undefined as never })),
    }))
  return { s, ranked }
}

const exposure = (key: number, extra: Partial<Exposure> = {}): Exposure => ({ key, nowMs: 1_767_225_600_123 + key, screen: 'home', experiment: undefined, holdout: false, elder: false, ...extra })

/** The list's id, computed apart from the log: the first 8 bytes of a SHA-256 of its ids. */
const listId = (s: LayoutSnapshot) =>
  createHash('sha256')
    .update(JSON.stringify([s.modules.map((m) => m.id), s.items.map((i) => i.id)]))
    .digest()
    .readBigUInt64BE(0)
    .toString()

function expectedRow(tenant: number, e: Exposure, ranked: RankedModule[], s: LayoutSnapshot) {
  const slots = ranked.flatMap((m) => m.items.map((p) => s.modules.indexOf(m.module) * s.items.length + p.item.index))
  return [tenant, e.key, chEpoch(e.nowMs), e.screen, e.experiment?.id ?? '', e.experiment?.variant.name ?? '', e.holdout ? 1 : 0, e.elder ? 1 : 0, s.build ?? 0, listId(s), slots]
}

describe('ExposureLog', () => {
  it('writes the rows tsvRows writes, awkward ids, arms and flags included, past its first buffer', () => {
    const { s, ranked } = fixture()
    const log = new ExposureLog(7, 64)
    const rows: unknown[][] = []
    const arms = [undefined, { id: 'exp\t1', variant: { name: "v'1\\" } }, { id: 'exp2', variant: { name: '对照' } }]
    for (let k = 1; k <= 300; k++) {
      const e = exposure(k, { experiment: arms[k % 3], holdout: k % 5 === 0, elder: k % 7 === 0, screen: k % 11 === 0 ? 'ho\tme' : 'home' })
      const r = ranked([...AWKWARD.keys()].filter((i) => (i + k) % 3 !== 0))
      log.append(s, e, r)
      rows.push(expectedRow(7, e, r, s))
    }
    expect(log.rows).toBe(300)
    expect(log.body().equals(tsvRows(rows))).toBe(true)
    // The one list the rows name, its ids quoted as the generic encoder quotes them.
    expect([...log.lists.keys()]).toEqual([listId(s)])
    expect(log.listsBody().equals(tsvRows([[7, listId(s), s.modules.map((m) => m.id), s.items.map((i) => i.id)]]))).toBe(true)
  })

  it('an empty layout writes an empty array; a snapshot with no build writes 0; another snapshot, another list', () => {
    const { s, ranked } = fixture()
    const log = new ExposureLog(3)
    const bare = { ...s, build: null }
    log.append(bare, exposure(9), ranked([]))
    expect(log.body().toString()).toBe(`3\t9\t${chEpoch(exposure(9).nowMs)}\thome\t\t\t0\t0\t0\t${listId(s)}\t[]\n`)
    const other = { ...s, items: s.items.slice(0, 4) }
    log.append(other, exposure(10), [])
    expect([...log.lists.keys()]).toEqual([listId(s), listId(other)])
    expect(listId(other)).not.toBe(listId(s))
  })

  it('without: the rows of other customers, byte for byte', () => {
    const { s, ranked } = fixture()
    const log = new ExposureLog(2, 16)
    const rows: unknown[][] = []
    for (const k of [5, 6, 5, 8, 9, 6]) {
      const r = ranked([k % 6, (k + 1) % 6])
      log.append(s, exposure(k), r)
      if (k !== 5 && k !== 9) rows.push(expectedRow(2, exposure(k), r, s))
    }
    const kept = log.without(new Set([5, 9]))
    expect(kept.keys).toEqual([6, 8, 6])
    expect(kept.body().equals(tsvRows(rows))).toBe(true)
    expect(kept.listsBody().equals(log.listsBody())).toBe(true)
    expect(log.rows).toBe(6)
  })
})
