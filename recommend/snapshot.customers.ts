import { tableFromIPC, type Data, type RecordBatch } from 'apache-arrow'
import type { TenantDb } from '../core/db.js'
import type { CustomerRows } from './model.snapshot.js'

/**
 * The customer rows of a layout snapshot (each customer's items with affinities, and what was
 * shown and clicked lately), read as Arrow columns straight into typed arrays.
 *
 * Why not rows of JSON: a bank's build has one row per customer with history (589,403 of 1M in
 * the demo), and parsing them as one JSON answer, checking each with zod and copying them held
 * the event loop for seconds after every model build; every request of the process waited
 * (measured: a 3.7 s event-loop stall after a tag run of the 500,000-customer demo bank). Here
 * the engine maps item ids to the snapshot's item indexes and drops unknown ones, the values
 * arrive as flat Arrow buffers that are copied with `set`, and the loop gets a turn between
 * blocks of rows.
 */

/** A query's result as Arrow (uncompressed: the reader here has no LZ4 codec registered). */
export async function arrowQuery(db: TenantDb, sql: string, params: Record<string, unknown>) {
  const chunks: Buffer[] = []
  for await (const c of await db.stream(`${sql} SETTINGS output_format_arrow_compression_method = 'none' FORMAT ArrowStream`, params)) chunks.push(c as Buffer)
  return tableFromIPC(Buffer.concat(chunks))
}

/** Offsets and flat values of a list column in one record batch. */
function listColumn<T extends ArrayLike<number>>(batch: RecordBatch, name: string): { offsets: Int32Array; values: T } {
  const data = batch.getChild(name)?.data[0] as Data | undefined
  if (!data) throw new Error(`the snapshot query has no column ${name}`)
  const offsets = (data.valueOffsets as Int32Array).subarray(data.offset, data.offset + data.length + 1)
  const child = data.children[0]!
  return { offsets, values: (child.values as { subarray(a: number, b?: number): T }).subarray(child.offset) }
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

export async function loadCustomers(db: TenantDb, build: string | null, itemIndex: ReadonlyMap<string, number>): Promise<CustomerRows> {
  const empty = (): CustomerRows => ({
    keys: new Uint32Array(0),
    itemOff: new Uint32Array(1),
    items: new Int32Array(0),
    affinity: new Float32Array(0),
    shownOff: new Uint32Array(1),
    shown: new Int32Array(0),
    shownToday: new Uint16Array(0),
    shownWeek: new Uint16Array(0),
    clickedWeek: new Uint16Array(0),
  })
  if (!build) return empty()
  // Item ids to the snapshot's indexes, in the engine: an id the catalogue no longer has maps to
  // -1 and is dropped with its paired values.
  const map = (col: string) => `arrayMap(i -> transform(i, {ids:Array(String)}, {idx:Array(Int32)}, toInt32(-1)), ${col})`
  const t = await arrowQuery(
    db,
    `SELECT k, arrayFilter(x -> x >= 0, ix) AS items, arrayFilter((a, x) -> x >= 0, affinity, ix) AS affinity,
            arrayFilter(x -> x >= 0, sx) AS shown, arrayFilter((a, x) -> x >= 0, today, sx) AS today,
            arrayFilter((a, x) -> x >= 0, week, sx) AS week, arrayFilter((a, x) -> x >= 0, clicked, sx) AS clicked
     FROM (
       SELECT toUInt32(customer_key) AS k, ${map('items')} AS ix, affinity, ${map('shown_items')} AS sx,
              shown_today AS today, shown_week AS week, clicked_week AS clicked
       FROM rec_customers WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64})
     ORDER BY k`,
    { build, ids: [...itemIndex.keys()], idx: [...itemIndex.values()] },
  )
  const n = t.numRows
  if (n === 0) return empty()
  // Totals first, from each batch's last offset, so every array is allocated once.
  let itemTotal = 0
  let shownTotal = 0
  for (const batch of t.batches) {
    const it = listColumn<Int32Array>(batch, 'items').offsets
    const sh = listColumn<Int32Array>(batch, 'shown').offsets
    itemTotal += it[it.length - 1]! - it[0]!
    shownTotal += sh[sh.length - 1]! - sh[0]!
  }
  const out: CustomerRows = {
    keys: new Uint32Array(n),
    itemOff: new Uint32Array(n + 1),
    items: new Int32Array(itemTotal),
    affinity: new Float32Array(itemTotal),
    shownOff: new Uint32Array(n + 1),
    shown: new Int32Array(shownTotal),
    shownToday: new Uint16Array(shownTotal),
    shownWeek: new Uint16Array(shownTotal),
    clickedWeek: new Uint16Array(shownTotal),
  }
  let row = 0
  let a = 0
  let b = 0
  for (const batch of t.batches) {
    out.keys.set(batch.getChild('k')!.toArray() as Uint32Array, row)
    const items = listColumn<Int32Array>(batch, 'items')
    const affinity = listColumn<Float32Array>(batch, 'affinity')
    const shown = listColumn<Int32Array>(batch, 'shown')
    const cols = [listColumn<Uint16Array>(batch, 'today'), listColumn<Uint16Array>(batch, 'week'), listColumn<Uint16Array>(batch, 'clicked')]
    const i0 = items.offsets[0]!
    const i1 = items.offsets[items.offsets.length - 1]!
    const s0 = shown.offsets[0]!
    const s1 = shown.offsets[shown.offsets.length - 1]!
    out.items.set(items.values.subarray(i0, i1), a)
    out.affinity.set(affinity.values.subarray(affinity.offsets[0]!, affinity.offsets[0]! + (i1 - i0)), a)
    out.shown.set(shown.values.subarray(s0, s1), b)
    const targets = [out.shownToday, out.shownWeek, out.clickedWeek]
    cols.forEach((c, j) => targets[j]!.set(c.values.subarray(c.offsets[0]!, c.offsets[0]! + (s1 - s0)), b))
    for (let r = 0; r < batch.numRows; r++) {
      out.itemOff[row + r + 1] = a + items.offsets[r + 1]! - i0
      out.shownOff[row + r + 1] = b + shown.offsets[r + 1]! - s0
    }
    row += batch.numRows
    a += i1 - i0
    b += s1 - s0
    await turn()
  }
  return out
}
