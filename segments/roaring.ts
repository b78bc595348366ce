/**
 * Roaring bitmaps in the process, for answering tag-only segment previews from memory.
 *
 * The `roaring` package (CRoaring, the library ClickHouse's own bitmaps are built on) is an
 * optional dependency: it is native code compiled at install when no prebuilt binary is
 * reachable. Where it could not be installed, `loadRoaring()` returns undefined and previews
 * run in ClickHouse as before. Only the calls used here are typed, so the project type-checks
 * whether or not the package is present.
 */

export interface Bitmap {
  readonly size: number
  has(value: number): boolean
  clone(): Bitmap
  andInPlace(other: Bitmap): Bitmap
  orInPlace(other: Bitmap): Bitmap
  andNotInPlace(other: Bitmap): Bitmap
  andCardinality(other: Bitmap): number
  /** The smallest `maxSize` members, ascending. */
  toUint32Array(maxSize?: number): Uint32Array
  getSerializationSizeInBytes(format: 'croaring'): number
}

export interface Roaring {
  create(values?: Uint32Array): Bitmap
  /** CRoaring's portable serialization (what ClickHouse writes for a large bitmap). */
  deserializePortable(bytes: Uint8Array): Bitmap
  orMany(bitmaps: readonly Bitmap[]): Bitmap
}

interface RoaringClass {
  new (values?: Uint32Array): Bitmap
  deserialize(bytes: Uint8Array, format: 'portable'): Bitmap
  orMany(...bitmaps: Bitmap[]): Bitmap
}

export async function loadRoaring(): Promise<Roaring | undefined> {
  let mod: { default?: { RoaringBitmap32?: RoaringClass }; RoaringBitmap32?: RoaringClass }
  try {
    // A variable specifier: the package is optional, so neither tsc nor the bundler may require it.
    const name = 'roaring'
    mod = (await import(name)) as typeof mod
  } catch {
    return undefined
  }
  const R = mod.RoaringBitmap32 ?? mod.default?.RoaringBitmap32
  if (!R) return undefined
  return {
    create: (values) => new R(values),
    deserializePortable: (bytes) => R.deserialize(bytes, 'portable'),
    orMany: (bitmaps) => (bitmaps.length ? R.orMany(...bitmaps) : new R()),
  }
}

/**
 * A ClickHouse `groupBitmap` state over UInt32 (what `toString(state)` returns): one byte, 0 for
 * a small set (a varint count, then that many little-endian UInt32) or 1 for a roaring bitmap (a
 * varint byte length, then CRoaring's portable serialization).
 */
export function decodeClickHouseBitmap(roaring: Roaring, state: Uint8Array): Bitmap {
  if (state.length === 0) return roaring.create()
  const [len, at] = readVarUInt(state, 1)
  if (state[0] === 0) {
    if (at + len * 4 > state.length) throw new Error('truncated bitmap state')
    const dv = new DataView(state.buffer, state.byteOffset + at, len * 4)
    const values = new Uint32Array(len)
    for (let i = 0; i < len; i++) values[i] = dv.getUint32(i * 4, true)
    values.sort()
    return roaring.create(values)
  }
  if (state[0] !== 1 || at + len > state.length) throw new Error('not a groupBitmap state')
  return roaring.deserializePortable(state.subarray(at, at + len))
}

function readVarUInt(b: Uint8Array, offset: number): [number, number] {
  let value = 0
  let shift = 0
  let i = offset
  for (;;) {
    if (i >= b.length) throw new Error('truncated varint')
    const byte = b[i++]!
    value += (byte & 0x7f) * 2 ** shift
    if (byte < 0x80) return [value, i]
    shift += 7
    if (shift > 49) throw new Error('varint too long')
  }
}
