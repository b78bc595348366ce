import { createHash } from 'node:crypto'
import { chEpoch } from '../core/time.js'
import { tsvField } from '../core/tsv.js'
import type { RankedModule } from './layout.rank.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/**
 * Layouts served and not yet written to `layout_exposures`, one tenant's: TabSeparated rows
 * (tenant_id first, then EXPOSURE_COLUMNS) appended as bytes when each layout is served.
 *
 * Why bytes: rows wait up to a flush interval. Kept as JavaScript strings (or arrays of ids) they
 * outlived the young generation and the collector copied and marked them: measured on the layout
 * route, writing exposures that way cost a third of the serving thread's time per layout. Bytes
 * outside the heap are never copied by it.
 *
 * Why positions: a row names what it showed by slot in its snapshot's list of modules and items
 * (sql/028_layout_exposure_lists.sql), not by id. The ids were most of a row's kilobyte and of
 * what the engine spent parsing, sorting and merging the inserts in the serving process. The log
 * keeps each list its rows name, so a flush writes the lists before the rows.
 */

export const EXPOSURE_COLUMNS = ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build', 'list', 'slots'] as const
export const LIST_COLUMNS = ['list', 'modules', 'items'] as const

export interface Exposure {
  key: number
  nowMs: number
  screen: string
  experiment: { id: string; variant: { name: string } } | undefined
  holdout: boolean
  elder: boolean
}

/** A snapshot's list: its id, the list's row after tenant_id, and per slot its number as bytes. */
interface Quoted {
  list: string
  listRow: string
  /** `model_build\tlist\t` of the row. */
  head: Buffer
  itemCount: number
  moduleAt: Map<object, number>
  slots: (Buffer | undefined)[]
}
const quotedOf = new WeakMap<LayoutSnapshot, Quoted>()
/** `experiment\tvariant` per variant object of a catalogue. */
const armOf = new WeakMap<object, Buffer>()
const NO_ARM = Buffer.from('\t')

/**
 * The list's id: the first 8 bytes of a SHA-256 of its content, so that every serving process,
 * before and after a restart, names the same list the same way (and writes the same row).
 */
function listOf(s: LayoutSnapshot): Quoted {
  let q = quotedOf.get(s)
  if (q) return q
  const modules = s.modules.map((m) => m.id)
  const items = s.items.map((i) => i.id)
  const list = createHash('sha256').update(JSON.stringify([modules, items])).digest().readBigUInt64BE(0).toString()
  q = {
    list,
    listRow: `${list}\t${tsvField(modules)}\t${tsvField(items)}\n`,
    head: Buffer.from(`${tsvField(s.build ?? 0)}\t${list}\t`),
    itemCount: items.length,
    moduleAt: new Map(s.modules.map((m, j) => [m, j])),
    slots: [],
  }
  quotedOf.set(s, q)
  return q
}

export class ExposureLog {
  private buf: Buffer
  private at = 0
  /** Per row: the customer key and where the row starts (an erasure removes rows by key). */
  readonly keys: number[] = []
  private readonly starts: number[] = []
  /** The lists the rows name: id → the list's row after tenant_id. */
  readonly lists = new Map<string, string>()

  constructor(
    readonly tenantId: number,
    size = 16 * 1024,
  ) {
    this.buf = Buffer.allocUnsafe(size)
  }

  get rows(): number {
    return this.keys.length
  }

  get bytes(): number {
    return this.at
  }

  /** The rows written, as one TabSeparated body (a view: the log is not written to afterwards). */
  body(): Buffer {
    return this.buf.subarray(0, this.at)
  }

  /** The lists the rows name, as one TabSeparated body of layout_exposure_lists (LIST_COLUMNS). */
  listsBody(ids: Iterable<string> = this.lists.keys()): Buffer {
    let text = ''
    for (const id of ids) text += `${this.tenantId}\t${this.lists.get(id)!}`
    return Buffer.from(text)
  }

  append(s: LayoutSnapshot, e: Exposure, ranked: readonly RankedModule[]): void {
    const q = listOf(s)
    if (!this.lists.has(q.list)) this.lists.set(q.list, q.listRow)
    this.keys.push(e.key)
    this.starts.push(this.at)
    this.ascii(`${this.tenantId}\t${e.key}\t${chEpoch(e.nowMs)}\t`)
    this.text(tsvField(e.screen))
    this.ascii('\t')
    if (e.experiment) {
      let arm = armOf.get(e.experiment.variant)
      if (!arm) armOf.set(e.experiment.variant, (arm = Buffer.from(`${tsvField(e.experiment.id)}\t${tsvField(e.experiment.variant.name)}`)))
      this.bytesOf(arm)
    } else this.bytesOf(NO_ARM)
    this.ascii(`\t${e.holdout ? 1 : 0}\t${e.elder ? 1 : 0}\t`)
    this.bytesOf(q.head)
    this.ascii('[')
    let first = true
    for (const m of ranked) {
      const j = q.moduleAt.get(m.module)
      // Ranking only places the snapshot's own modules; anything else is a defect to surface.
      if (j === undefined) throw new Error(`module ${m.module.id} is not one of the snapshot's`)
      for (const p of m.items) {
        if (!first) this.ascii(',')
        first = false
        const slot = j * q.itemCount + p.item.index
        let sq = q.slots[slot]
        if (!sq) q.slots[slot] = sq = Buffer.from(String(slot))
        this.bytesOf(sq)
      }
    }
    this.ascii(']\n')
  }

  /** A log of the same tenant without the rows of these customers. */
  without(keys: ReadonlySet<number>): ExposureLog {
    const kept = new ExposureLog(this.tenantId, Math.max(1024, this.at))
    for (let r = 0; r < this.keys.length; r++) {
      if (keys.has(this.keys[r]!)) continue
      const end = r + 1 < this.starts.length ? this.starts[r + 1]! : this.at
      kept.keys.push(this.keys[r]!)
      kept.starts.push(kept.at)
      kept.bytesOf(this.buf.subarray(this.starts[r]!, end))
    }
    for (const [id, row] of this.lists) kept.lists.set(id, row)
    return kept
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n))
    this.buf.copy(grown, 0, 0, this.at)
    this.buf = grown
  }

  private bytesOf(b: Buffer): void {
    this.room(b.length)
    this.buf.set(b, this.at)
    this.at += b.length
  }

  /** Short ASCII (numbers, separators): a loop costs less than a call into Buffer.write. */
  private ascii(s: string): void {
    this.room(s.length)
    for (let k = 0; k < s.length; k++) this.buf[this.at++] = s.charCodeAt(k)
  }

  private text(s: string): void {
    const n = Buffer.byteLength(s)
    this.room(n)
    this.at += this.buf.write(s, this.at)
  }
}
