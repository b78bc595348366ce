/**
 * The 32 KB per-event limit, decided without serializing the event.
 *
 * The limit is on the event's JSON (UTF-8 bytes of `JSON.stringify`), and the answer must be the
 * same as measuring that: an event refused on one server and stored on another, or stored today
 * and refused after an upgrade, would be a bug a sender cannot see. Building the JSON of every
 * event only to throw it away, though, cost a serialization per event on the ingest path.
 *
 * So one walk over the parsed event sums bounds instead: a string of n UTF-16 units takes at
 * least n + 2 bytes (each unit is at least one byte, plus the quotes) and at most 6n + 2 (an
 * escaped control character or lone surrogate is `\uXXXX`; anything else is at most 3 bytes a
 * unit); a number 1 to 24 characters (`-1.7976931348623157e+308`); the punctuation is exact. When
 * the upper bound is within the limit the event is (nearly every event: a 5 KB event's bound is
 * about 30 KB); when the lower bound is over it, it is not; only in between is the JSON built and
 * measured. The walk reads no string's content, only its length.
 */

const MAX_NUMBER_CHARS = 24
/** The walk runs after the depth check (normalize.ts); deeper than this it defers to the exact measure. */
const MAX_WALK_DEPTH = 64

let lo = 0
let hi = 0
let unsure = false

function add(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      lo += v.length + 2
      hi += 6 * v.length + 2
      return
    case 'number':
      lo += 1
      hi += MAX_NUMBER_CHARS
      return
    case 'boolean':
      lo += v ? 4 : 5
      hi += v ? 4 : 5
      return
    case 'object':
      break
    default:
      // undefined, functions, symbols, bigints: not from JSON.parse; measured exactly if ever met.
      unsure = true
      return
  }
  if (v === null) {
    lo += 4
    hi += 4
    return
  }
  if (depth >= MAX_WALK_DEPTH || typeof (v as { toJSON?: unknown }).toJSON === 'function') {
    unsure = true
    return
  }
  if (Array.isArray(v)) {
    // Brackets and the commas between items.
    const punct = v.length ? v.length + 1 : 2
    lo += punct
    hi += punct
    for (let i = 0; i < v.length; i++) add(v[i], depth + 1)
    return
  }
  let n = 0
  for (const k in v as Record<string, unknown>) {
    const x = (v as Record<string, unknown>)[k]
    if (x === undefined) {
      unsure = true
      return
    }
    n++
    // The key in quotes and its colon.
    lo += k.length + 3
    hi += 6 * k.length + 3
    add(x, depth + 1)
  }
  const punct = n ? n + 1 : 2
  lo += punct
  hi += punct
}

/** Whether `JSON.stringify(value)` would be more than `limit` bytes of UTF-8; the same answer, mostly without building it. */
export function jsonLargerThan(value: unknown, limit: number): boolean {
  lo = 0
  hi = 0
  unsure = false
  add(value, 0)
  if (!unsure) {
    if (hi <= limit) return false
    if (lo > limit) return true
  }
  return Buffer.byteLength(JSON.stringify(value) ?? '') > limit
}
