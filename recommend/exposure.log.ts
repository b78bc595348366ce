import { chEpoch } from '../core/time.js'
import { tsvArrayString, tsvField } from '../core/tsv.js'
import type { RankedModule } from './layout.rank.js'
import type { LayoutSnapshot } from './model.snapshot.js'

/**
 * Layouts served and not yet written to `layout_exposures`, one tenant's: TabSeparated rows
 * (tenant_id first, then EXPOSURE_COLUMNS) appended as bytes when each layout is served.
 *
 * Why bytes: a layout's row is about a kilobyte (every module and item id shown), and rows wait
 * up to a flush interval. Kept as JavaScript strings (or arrays of ids) they outlived the young
 * generation and the collector copied and marked them: measured on the layout route, writing
 * exposures that way cost a third of the serving thread's time per layout. Bytes outside the
 * heap are never copied by it; the ids are quoted once per snapshot.
 */

export const EXPOSURE_COLUMNS = ['customer_key', 'served_at', 'screen', 'experiment', 'variant', 'holdout', 'elder', 'model_build', 'modules', 'items'] as const

export interface Exposure {
  key: number
  nowMs: number
  screen: string
  experiment: { id: string; variant: { name: string } } | undefined
  holdout: boolean
  elder: boolean
}

/** Quoted ids (array elements) and the build field, per snapshot, as bytes. */
interface Quoted {
  items: (Buffer | undefined)[]
  modules: Map<object, Buffer>
  build: Buffer
}
const quotedOf = new WeakMap<LayoutSnapshot, Quoted>()
/** `experiment\tvariant` per variant object of a catalogue. */
const armOf = new WeakMap<object, Buffer>()
const NO_ARM = Buffer.from('\t')

function quoted(s: LayoutSnapshot): Quoted {
  let q = quotedOf.get(s)
  if (!q) quotedOf.set(s, (q = { items: [], modules: new Map(), build: Buffer.from(tsvField(s.build ?? 0)) }))
  return q
}

export class ExposureLog {
  private buf: Buffer
  private at = 0
  /** Per row: the customer key and where the row starts (an erasure removes rows by key). */
  readonly keys: number[] = []
  private readonly starts: number[] = []

  constructor(
    readonly tenantId: number,
    size = 64 * 1024,
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

  append(s: LayoutSnapshot, e: Exposure, ranked: readonly RankedModule[]): void {
    const q = quoted(s)
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
    this.bytesOf(q.build)
    // modules: the module of each item shown, parallel to items.
    this.ascii('\t[')
    let first = true
    for (const m of ranked) {
      let mq = q.modules.get(m.module)
      if (!mq) q.modules.set(m.module, (mq = Buffer.from(tsvArrayString(m.module.id))))
      for (let i = 0; i < m.items.length; i++) {
        if (!first) this.ascii(',')
        first = false
        this.bytesOf(mq)
      }
    }
    this.ascii(']\t[')
    first = true
    for (const m of ranked) {
      for (const p of m.items) {
        if (!first) this.ascii(',')
        first = false
        const idx = p.item.index
        let iq = q.items[idx]
        if (!iq) q.items[idx] = iq = Buffer.from(tsvArrayString(p.item.id))
        this.bytesOf(iq)
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
