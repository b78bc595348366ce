/**
 * Personal data found by its value, whatever the field is called: mainland mobile numbers,
 * resident identity numbers, bank card numbers and e-mail addresses, in any string (a whole
 * value or inside free text). It runs on every string of every event, so it is one pass over
 * the characters with no regular expression: digit runs are collected as they end and only a
 * run of a length that can be an identifier is looked at again (prefix, date, checksum); an
 * e-mail address is only looked for around an '@'.
 *
 * What counts as a number: a run of ASCII digits bordered by anything but an ASCII letter, a
 * digit or a decimal point with digits after it. So `SO13812345678` (an order code) and
 * `13812345678.50` (an amount) are not numbers; `手机13812345678`, `tel:13812345678` and
 * `?phone=13812345678` are. Separated forms (`138 1234 5678`) are not caught (documented).
 */

export type PiiKind = 'phone' | 'national_id' | 'card' | 'email'
export const PII_KINDS: readonly PiiKind[] = ['phone', 'national_id', 'card', 'email']

export interface PiiMatch {
  kind: PiiKind
  start: number
  end: number
}

const D0 = 48
const D9 = 57
const isDigit = (c: number) => c >= D0 && c <= D9
const isAsciiLetter = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122)

/** Province-level prefixes of resident identity numbers (GB/T 2260), Hong Kong, Macao and Taiwan residents' permits included. */
const ID_PROVINCES = new Set([11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83])
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
const ID_CHECK = '10X98765432'
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

const digitAt = (s: string, i: number) => s.charCodeAt(i) - D0

/** 18 characters from `at`: 17 digits and a check character (ISO 7064 MOD 11-2), a known province, a real birth date. */
export function isResidentId(s: string, at = 0): boolean {
  if (!ID_PROVINCES.has(digitAt(s, at) * 10 + digitAt(s, at + 1))) return false
  const year = digitAt(s, at + 6) * 1000 + digitAt(s, at + 7) * 100 + digitAt(s, at + 8) * 10 + digitAt(s, at + 9)
  const month = digitAt(s, at + 10) * 10 + digitAt(s, at + 11)
  const day = digitAt(s, at + 12) * 10 + digitAt(s, at + 13)
  if (year < 1900 || year > 2099 || month < 1 || month > 12 || day < 1 || day > DAYS_IN_MONTH[month - 1]!) return false
  if (month === 2 && day === 29 && (year % 4 !== 0 || (year % 100 === 0 && year % 400 !== 0))) return false
  let sum = 0
  for (let i = 0; i < 17; i++) sum += digitAt(s, at + i) * ID_WEIGHTS[i]!
  const check = s[at + 17]!.toUpperCase()
  return ID_CHECK[sum % 11] === check
}

/** Luhn over `len` digits from `at`. */
export function luhn(s: string, at: number, len: number): boolean {
  let sum = 0
  for (let i = 0; i < len; i++) {
    let d = digitAt(s, at + len - 1 - i)
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

/**
 * A digit run of `len` from `at` (17 digits and an X for an identity number) as an identifier.
 * Cards pass Luhn and have the prefix and length of the schemes banks here issue (62 UnionPay
 * 16-19 digits, 4 Visa 13/16/19, 5 Mastercard 16): one random number in ten passes Luhn, so
 * without them every tenth order or reference number would be taken for a card. Still, a
 * 16-19 digit reference number starting with 62 is taken for a card one time in ten: it is
 * masked or digested like one (the safe side).
 */
function classifyRun(s: string, at: number, len: number): PiiKind | undefined {
  const c0 = s.charCodeAt(at)
  if (len === 18 && isResidentId(s, at)) return 'national_id'
  if (len === 11 && c0 === 49 && s.charCodeAt(at + 1) >= 51) return 'phone'
  // +86 / 0086 written without a separator (the digest drops the code: core/pii.ts).
  if (len === 13 && c0 === 56 && s.charCodeAt(at + 1) === 54 && s.charCodeAt(at + 2) === 49 && s.charCodeAt(at + 3) >= 51) return 'phone'
  if (len === 15 && s.startsWith('0086', at) && s.charCodeAt(at + 4) === 49 && s.charCodeAt(at + 5) >= 51) return 'phone'
  const unionPay = c0 === 54 && s.charCodeAt(at + 1) === 50 && len >= 16
  // Visa is 13, 16 or 19 digits, Mastercard 16: an 18-digit run starting with 4 or 5 (a mistyped
  // identity number from Hubei or Henan) is no card.
  const visaOrMc = (c0 === 52 && (len === 13 || len === 16 || len === 19)) || (c0 === 53 && len === 16)
  if ((unionPay || visaOrMc) && luhn(s, at, len)) return 'card'
  return undefined
}

const isLocalChar = (c: number) => isAsciiLetter(c) || isDigit(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45
const isDomainChar = (c: number) => isAsciiLetter(c) || isDigit(c) || c === 46 || c === 45

/** An address around the '@' at `at`: local part up to 64 characters, a domain with a dot and a 2-24 letter ending. */
function emailAround(s: string, at: number, floor: number): PiiMatch | undefined {
  let start = at
  while (start > floor && at - start < 64 && isLocalChar(s.charCodeAt(start - 1))) start--
  if (start === at) return undefined
  // A local part may not start with a dot.
  while (start < at && s.charCodeAt(start) === 46) start++
  if (start === at) return undefined
  let end = at + 1
  let lastDot = -1
  while (end < s.length && end - at < 253 && isDomainChar(s.charCodeAt(end))) {
    if (s.charCodeAt(end) === 46) lastDot = end
    end++
  }
  // A sentence's full stop after the address is not part of it.
  while (end > at + 1 && s.charCodeAt(end - 1) === 46) end--
  if (lastDot >= end) lastDot = s.lastIndexOf('.', end - 1)
  if (lastDot <= at + 1) return undefined
  const tld = end - lastDot - 1
  if (tld < 2 || tld > 24) return undefined
  for (let i = lastDot + 1; i < end; i++) if (!isAsciiLetter(s.charCodeAt(i))) return undefined
  return { kind: 'email', start, end }
}

const NONE: readonly PiiMatch[] = Object.freeze([])

/**
 * Every identifier in `s`, in order, not overlapping. Most strings hold none: they get one shared
 * empty answer, and one shorter than a phone number (11 digits) without an '@' is not even read.
 */
export function findPii(s: string): readonly PiiMatch[] {
  const n = s.length
  // The shortest address is 6 characters (a@b.cn), the shortest number 11 digits.
  if (n < 6 || (n < 11 && s.indexOf('@') < 0)) return NONE
  let out: PiiMatch[] | undefined
  let runStart = -1
  let floor = 0
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : -1
    if (isDigit(c)) {
      if (runStart < 0) runStart = i
      continue
    }
    if (c === 64) {
      const m = emailAround(s, i, floor)
      if (m) {
        out ??= []
        // The digits of the local part belong to the address, not to a number.
        if (out.length && out[out.length - 1]!.end > m.start) out.pop()
        out.push(m)
        floor = m.end
        i = m.end - 1
        runStart = -1
        continue
      }
    }
    if (runStart < 0) continue
    let len = i - runStart
    let end = i
    // An identity number may end in X: it belongs to the run, and such a run is nothing else.
    const endsInX = len === 17 && (c === 88 || c === 120)
    if (endsInX) {
      len = 18
      end = i + 1
    }
    if (len >= 11 && len <= 19) {
      const before = runStart > 0 ? s.charCodeAt(runStart - 1) : -1
      const after = end < n ? s.charCodeAt(end) : -1
      const bordered =
        isAsciiLetter(before) || isAsciiLetter(after) || (before === 46 && runStart > 1 && isDigit(s.charCodeAt(runStart - 2))) || (after === 46 && end + 1 < n && isDigit(s.charCodeAt(end + 1)))
      const kind = bordered ? undefined : endsInX ? (isResidentId(s, runStart) ? 'national_id' : undefined) : classifyRun(s, runStart, len)
      // The `+` of a country code belongs to the number: `+8613812345678` is wholly one.
      const plus = kind === 'phone' && len > 11 && before === 43
      if (kind) (out ??= []).push({ kind, start: plus ? runStart - 1 : runStart, end })
    }
    runStart = -1
    if (end > i) i = end - 1
  }
  return out ?? NONE
}

/** 13812345678 -> 138****5678; cards keep the first six and last four, identity numbers the first and last. */
export function maskValue(kind: PiiKind, v: string): string {
  if (kind === 'email') {
    const at = v.indexOf('@')
    return v[0] + '***' + v.slice(at)
  }
  const head = kind === 'phone' ? v.length - 8 : kind === 'card' ? 6 : 1
  const tail = kind === 'national_id' ? 1 : 4
  return v.slice(0, head) + '*'.repeat(v.length - head - tail) + v.slice(v.length - tail)
}

export type ValuePolicy = 'digest' | 'mask'

/**
 * Replaces identifiers in the strings given to `text` by the tenant's policy and counts them:
 * `digest` writes `[phone:<keyed digest>]` (equal values still match within the bank), `mask`
 * writes `138****5678`. One scanner per request: its counts go to the metrics afterwards.
 */
export interface ValueScanner {
  readonly policy: ValuePolicy
  /** The string with every identifier replaced; the same string when there is none. */
  text(s: string): string
  /** A whole value that is one identifier and nothing else (a trait holding a phone), counted; or undefined. */
  whole(s: string): PiiKind | undefined
  readonly counts: Record<PiiKind, number>
}

export function createValueScanner(policy: ValuePolicy, digest: (kind: PiiKind, value: string) => string): ValueScanner {
  const counts: Record<PiiKind, number> = { phone: 0, national_id: 0, card: 0, email: 0 }
  // A top-level trait is asked `whole` first and, when it is not one identifier, `text` next:
  // the matches of the last string asked are kept so that it is read once.
  let lastString: string | undefined
  let lastFound: readonly PiiMatch[] = NONE
  return {
    policy,
    counts,
    text(s) {
      const found = s === lastString ? lastFound : findPii(s)
      lastString = undefined
      if (!found.length) return s
      let out = ''
      let from = 0
      for (const m of found) {
        counts[m.kind]++
        const v = s.slice(m.start, m.end)
        out += s.slice(from, m.start) + (policy === 'mask' ? maskValue(m.kind, v) : `[${m.kind}:${digest(m.kind, v)}]`)
        from = m.end
      }
      return out + s.slice(from)
    },
    whole(s) {
      const found = findPii(s)
      if (found.length !== 1 || found[0]!.start !== 0 || found[0]!.end !== s.length) {
        lastString = s
        lastFound = found
        return undefined
      }
      lastString = undefined
      counts[found[0]!.kind]++
      return found[0]!.kind
    },
  }
}
