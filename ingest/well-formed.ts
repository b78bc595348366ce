/**
 * Text as UTF-8 can carry it. A JavaScript string may hold half of a character: an unpaired
 * UTF-16 surrogate, from a `\ud83d` JSON escape (valid JSON, valid UTF-8 bytes) or from a string
 * cut between the two halves of an emoji. UTF-8 has no form for one: the engine refuses it in a
 * JSON insert (CANNOT_PARSE_ESCAPE_SEQUENCE, the whole insert) and a TabSeparated body carries it
 * as U+FFFD. So stored text is repaired the way a UTF-8 encoder does it (each unpaired surrogate
 * becomes U+FFFD), and cut only between characters.
 */

// Node 20 has both (ES2024); the compiler's library here is ES2022.
const native = String.prototype as unknown as { isWellFormed(this: string): boolean; toWellFormed(this: string): string }

/** Whether `s` holds no unpaired surrogate (constant time for Latin-1 text, a scan otherwise). */
export function isWellFormed(s: string): boolean {
  return native.isWellFormed.call(s)
}

/** `s` with each unpaired surrogate replaced by U+FFFD; `s` itself when it holds none. */
export function wellFormed(s: string): string {
  return native.isWellFormed.call(s) ? s : native.toWellFormed.call(s)
}

/** At most `max` UTF-16 units of `s`, cut before a character rather than inside one. */
export function cutText(s: string, max: number): string {
  if (s.length <= max) return s
  const last = s.charCodeAt(max - 1)
  // A high surrogate at the cut: its low half is beyond it.
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max)
}

/** Cut as `cutText`, then repaired: what a column of at most `max` units may store. */
export function storableText(s: string, max: number): string {
  return wellFormed(cutText(s, max))
}
