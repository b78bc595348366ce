import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { seededRandom as random } from '../test/fixtures.js'
import type { CustomerRows } from './model.snapshot.js'
import { loadCustomers } from './snapshot.customers.js'

/**
 * A snapshot's customer rows read as Arrow columns equal what the row-by-row reading gave
 * (items mapped to the snapshot's indexes, unknown ids dropped with their paired values), over
 * more rows than one block of the engine's answer, so rows cross batch boundaries.
 */

const TENANT = 7
const BUILD = '42'
const N = 70_000 // more than one block (65,409 rows by default)
let e: TestEngine

interface Row {
  k: number
  items: string[]
  affinity: number[]
  shown: string[]
  today: number[]
  week: number[]
  clicked: number[]
}

// The catalogue's items: `gone-*` ids are in the build but no longer in the catalogue.
const catalogue = ['card', 'loan', 'product:wm-01', 'product:wm-02', 'bills', 'transfer']
const itemIndex = new Map(catalogue.map((id, i) => [id, i * 2])) // indexes need not be dense
const pool = [...catalogue, 'gone-1', 'gone-2']
const rows: Row[] = []

beforeAll(async () => {
  e = await openTestEngine()
  const rand = random(11)
  const pick = (n: number) => Array.from({ length: n }, () => pool[Math.floor(rand() * pool.length)]!)
  for (let k = 1; k <= N; k++) {
    const items = pick(Math.floor(rand() * 4)) // some customers with none
    const shown = pick(Math.floor(rand() * 3))
    rows.push({
      k: k * 3, // keys need not be dense either
      items,
      affinity: items.map(() => Math.fround(rand())),
      shown,
      today: shown.map(() => Math.floor(rand() * 5)),
      week: shown.map(() => Math.floor(rand() * 20)),
      clicked: shown.map(() => Math.floor(rand() * 3)),
    })
  }
  // Inserted out of key order: the reading sorts.
  const shuffled = [...rows].sort((a, b) => ((a.k * 7919) % 1009) - ((b.k * 7919) % 1009))
  await e.db.forTenant(TENANT).insert(
    'rec_customers',
    shuffled.map((r) => ({ build: BUILD, customer_key: r.k, items: r.items, affinity: r.affinity, shown_items: r.shown, shown_today: r.today, shown_week: r.week, clicked_week: r.clicked })),
  )
}, 120_000)
afterAll(async () => e?.close())

/** The reading as it was: rows of JSON, mapped and packed in JavaScript. */
function reference(src: Row[]): CustomerRows {
  const sorted = [...src].sort((a, b) => a.k - b.k)
  const keys: number[] = []
  const itemOff = [0]
  const items: number[] = []
  const affinity: number[] = []
  const shownOff = [0]
  const shown: number[] = []
  const today: number[] = []
  const week: number[] = []
  const clicked: number[] = []
  for (const r of sorted) {
    keys.push(r.k)
    r.items.forEach((id, j) => {
      const x = itemIndex.get(id)
      if (x === undefined) return
      items.push(x)
      affinity.push(r.affinity[j]!)
    })
    itemOff.push(items.length)
    r.shown.forEach((id, j) => {
      const x = itemIndex.get(id)
      if (x === undefined) return
      shown.push(x)
      today.push(r.today[j]!)
      week.push(r.week[j]!)
      clicked.push(r.clicked[j]!)
    })
    shownOff.push(shown.length)
  }
  return {
    keys: Uint32Array.from(keys),
    itemOff: Uint32Array.from(itemOff),
    items: Int32Array.from(items),
    affinity: Float32Array.from(affinity),
    shownOff: Uint32Array.from(shownOff),
    shown: Int32Array.from(shown),
    shownToday: Uint16Array.from(today),
    shownWeek: Uint16Array.from(week),
    clickedWeek: Uint16Array.from(clicked),
  }
}

describe('loadCustomers', () => {
  it('reads every customer row of the build as the row-by-row reading did, across blocks', async () => {
    const got = await loadCustomers(e.db.forTenant(TENANT), BUILD, itemIndex)
    const want = reference(rows)
    expect(got.keys.length).toBe(N)
    // Unknown ids were in the build and are gone from the snapshot.
    expect(want.items.length).toBeLessThan(rows.reduce((s, r) => s + r.items.length, 0))
    for (const k of Object.keys(want) as (keyof CustomerRows)[]) expect(got[k], k).toEqual(want[k])
  })

  it('gives empty rows for no build, and for a build without customers', async () => {
    for (const build of [null, '43']) {
      const got = await loadCustomers(e.db.forTenant(TENANT), build, itemIndex)
      expect(got.keys.length).toBe(0)
      expect([...got.itemOff]).toEqual([0])
      expect([...got.shownOff]).toEqual([0])
    }
  })
})
