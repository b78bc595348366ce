import { errText } from '../core/errors.js'

/**
 * Fault isolation for the shared insert. Many tenants' requests are coalesced into one insert, and
 * the engine refuses a whole insert for one value it cannot parse. Validation refuses every value
 * known to be unstorable; this is the net under it: a failed insert whose error says "a value of
 * the data" is split in halves until the refused rows stand alone, so every other row is stored
 * and only the rows at fault are answered with a refusal. An error of any other kind (the engine
 * unreachable, out of memory, too many parts) is not the rows' fault and fails the whole insert as
 * before (503, retry), and a lone row is blamed only after the engine answered a health probe.
 */

/** ClickHouse error names that mean "this input's values", not "this engine's state". */
const ROW_ERROR =
  /\b(CANNOT_PARSE_[A-Z0-9_]+|CANNOT_READ_ARRAY_FROM_TEXT|CANNOT_READ_ALL_DATA|INCORRECT_DATA|TYPE_MISMATCH|VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE|ARGUMENT_OUT_OF_BOUND|TOO_LARGE_STRING_SIZE|UNKNOWN_ELEMENT_OF_ENUM|DECIMAL_OVERFLOW|INCORRECT_NUMBER_OF_COLUMNS|CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN)\b/

/** The ClickHouse error name when `e` (or its cause) is a refusal of the inserted values. */
export function rowErrorName(e: unknown): string | undefined {
  for (let x: unknown = e, i = 0; x && i < 5; x = (x as { cause?: unknown }).cause, i++) {
    const m = ROW_ERROR.exec(errText(x))
    if (m) return m[1]
  }
  return undefined
}

export interface Refusal {
  /** The engine's column at fault when its message names one. */
  column: string | undefined
  message: string
}

/** A short, client-safe reason: the engine's first line without its stack or file paths. */
export function refusalOf(e: unknown): Refusal {
  const text = errText(e)
  const column = /name:\s*([A-Za-z_][A-Za-z0-9_]*)/.exec(text)?.[1] ?? /column\s+`?([A-Za-z_][A-Za-z0-9_]*)`?/i.exec(text)?.[1]
  const name = rowErrorName(e) ?? 'refused'
  const first = (text.split('\n')[0] ?? '').replace(/^Code:\s*\d+\.\s*DB::Exception:\s*/, '').replace(/\/[^\s:]+/g, '…').slice(0, 200)
  return { column, message: `the storage engine refused a value (${name}): ${first}` }
}

export interface IsolationDeps {
  /** Inserts the rows at these indexes in one insert. */
  insert(indexes: number[]): Promise<void>
  /** Of these indexes, the ones whose rows are already stored (a failed insert may have written blocks before its bad one). */
  alreadyStored(indexes: number[]): Promise<Set<number>>
  /** Throws when the engine is not healthy (a lone row's failure is then not the row's fault). */
  probe(): Promise<void>
}

/**
 * Inserts rows [0, n), splitting failed inserts; resolves to the refusal of each row the engine
 * refused on its own (by index), or throws the first error that is not about the rows' values.
 */
export async function insertIsolating(n: number, deps: IsolationDeps): Promise<{ refused: Map<number, Refusal>; inserts: number }> {
  const refused = new Map<number, Refusal>()
  let inserts = 0
  async function attempt(idx: number[]): Promise<void> {
    try {
      inserts++
      await deps.insert(idx)
      return
    } catch (e) {
      if (!rowErrorName(e)) throw e
      const stored = await deps.alreadyStored(idx)
      if (stored.size) {
        // Part of it was written: the rest is tried again as it is (each round stores something
        // or splits, so this ends), never written twice, and no row is blamed on a partial write.
        const rest = idx.filter((i) => !stored.has(i))
        if (rest.length) await attempt(rest)
        return
      }
      if (idx.length === 1) {
        try {
          await deps.probe()
        } catch {
          throw e
        }
        refused.set(idx[0]!, refusalOf(e))
        return
      }
      const mid = idx.length >> 1
      await attempt(idx.slice(0, mid))
      await attempt(idx.slice(mid))
    }
  }
  if (n > 0) await attempt(Array.from({ length: n }, (_, i) => i))
  return { refused, inserts }
}
