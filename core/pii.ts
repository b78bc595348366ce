import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import { findPii } from './pii.scan.js'

/**
 * Protection of personal fields ("minimum necessary"): identifiers that are only ever matched,
 * such as a mobile number or national id, are stored as keyed HMAC-SHA256 digests; display names
 * are stored masked. The master secret is QIANMIAN_PII_SECRET, or for the embedded default a
 * random secret kept (mode 0600) in the data directory on first start.
 *
 * Each bank digests with its own key, HMAC(master, "tenant:" + id), written `k2:<hex>`: the same
 * identity number has unrelated digests in two banks, so customers cannot be linked across banks
 * by their digests. The bank's digest is taken over the shared one rather than over the value,
 *   k2 = HMAC(bankKey, v1)   with   v1 = hex HMAC(master, kind + ":" + normalized value),
 * so that a stored version-1 digest (bare hex, made before per-bank keys) can be converted to the
 * bank's without the value it was made from (`rekey`, run by tenants/digest.migration.ts). Whoever
 * lacks the master can compute neither layer.
 */
export type DigestKind = 'phone' | 'national_id' | 'card' | 'email' | 'name'

export interface Pii {
  /** The bank's keyed digest of an identifier after normalization (digits only for phones and ids). */
  hash(kind: DigestKind, value: string, tenantId: number): string
  /** The forms a stored digest of this value may take in the bank: its own key's, then the shared key's (version 1). */
  digests(kind: DigestKind, value: string, tenantId: number): [current: string, legacy: string]
  /** The bank's digest of a stored version-1 digest (64 lowercase hex): equal to `hash` of the value it was made from. */
  rekey(legacy: string, tenantId: number): string
  /**
   * A keyed digest of content (hex) under the bank's key: the id of a message sent without one.
   * Never a plain hash: the content may hold an identifier few enough to enumerate (a phone).
   */
  contentDigest(text: string, tenantId: number): string
  /** 张三丰 -> 张**, Alice Wang -> A**** W*** */
  maskName(name: string): string
  /**
   * What `createPii` needs to make the same digests in a worker thread of this process (the ingest
   * pool, ingest/ingest.pool.ts). A method, not a field, so that logging the object does not print
   * the secret. Without it (a stand-in) the ingest edge works in its own thread.
   */
  threadSeed?(): { secret: string; cacheEntries: number }
}

/**
 * The kind a sensitive trait is digested as, so that it matches the same value from elsewhere
 * in the bank (the import's `national_id`, the value scan's finds). Known names first: `idCard`
 * is an identity number, though it says "card"; a card number can pass as an identity number
 * (62 is also Gansu's province code), so the name wins over the value. Other names: the value,
 * when it is wholly one identifier; then what the name says.
 */
const TRAIT_KINDS = new Map<string, DigestKind>([
  ...['phone', 'mobile', 'phonenumber', 'mobilephone', 'mobilenumber', 'cellphone', 'tel', 'telephone'].map((n) => [n, 'phone'] as const),
  ...['nationalid', 'idnumber', 'idcard', 'idno', 'idcardno', 'idcardnumber', 'residentid', 'identitynumber'].map((n) => [n, 'national_id'] as const),
  ...['bankcard', 'cardnumber', 'cardno', 'bankcardno', 'bankcardnumber'].map((n) => [n, 'card'] as const),
  ...['email', 'emailaddress', 'mail'].map((n) => [n, 'email'] as const),
  ...['name', 'firstname', 'lastname', 'fullname', 'realname', 'address'].map((n) => [n, 'name'] as const),
])

export function traitDigestKind(k: string, value: string): DigestKind {
  const l = k.toLowerCase().replace(/[_\-\s.]/g, '')
  const named = TRAIT_KINDS.get(l)
  if (named) return named
  const found = findPii(value)
  if (found.length === 1 && found[0]!.start === 0 && found[0]!.end === value.length) return found[0]!.kind
  if (l.includes('phone') || l.includes('mobile')) return 'phone'
  if (l.includes('email')) return 'email'
  if (l.includes('idcard') || l.includes('national') || l.includes('identity')) return 'national_id'
  if (l.includes('card')) return 'card'
  if (l.includes('id')) return 'national_id'
  return 'name'
}

export const TENANT_DIGEST_PREFIX = 'k2:'
/** A version-1 digest as stored: bare hex of an HMAC-SHA256 (also the engine's `match` pattern). */
export const LEGACY_DIGEST_PATTERN = '^[0-9a-f]{64}$'
const LEGACY_DIGEST = new RegExp(LEGACY_DIGEST_PATTERN)
const MEMO_VALUE_CHARS = 64

/** A mainland mobile number without a country code (`+86`, `0086`, `86`) written before it, or the digits as they are. */
const withoutCountryCode = (digits: string) => {
  const rest = digits.startsWith('0086') ? digits.slice(4) : digits.startsWith('86') ? digits.slice(2) : digits
  return rest !== digits && /^1[3-9]\d{9}$/.test(rest) ? rest : digits
}

/**
 * What a digest is taken over: digits for numbers, lower case for the rest. A mobile number with
 * its country code is the same number, so `+86 138 1234 5678` and `13812345678` match within the
 * bank (events, traits and imported profiles alike).
 */
function normalizeIdentifier(kind: DigestKind, value: string): string {
  if (kind === 'email' || kind === 'name') return value.trim().toLowerCase()
  const v = value.replace(/[^0-9Xx]/g, '').toUpperCase()
  return kind === 'phone' ? withoutCountryCode(v) : v
}

export function createPii(secret: string, opts: { cacheEntries?: number } = {}): Pii {
  const keys = new Map<number, Buffer>()
  const tenantKey = (tenantId: number) => {
    let k = keys.get(tenantId)
    if (!k) {
      if (!Number.isInteger(tenantId) || tenantId <= 0) throw new Error(`no digest key for tenant ${tenantId}`)
      k = crypto.createHmac('sha256', secret).update(`tenant:${tenantId}`).digest()
      keys.set(tenantId, k)
    }
    return k
  }
  const legacy = (kind: DigestKind, value: string) => crypto.createHmac('sha256', secret).update(`${kind}:${normalizeIdentifier(kind, value)}`).digest('hex')
  const wrap = (v1: string, tenantId: number) => TENANT_DIGEST_PREFIX + crypto.createHmac('sha256', tenantKey(tenantId)).update(v1).digest('hex')
  const rekey = (v1: string, tenantId: number) => {
    if (!LEGACY_DIGEST.test(v1)) throw new Error('not a version-1 digest')
    return wrap(v1, tenantId)
  }
  // Two HMACs a value, and ingest digests the same few phone numbers over and over (a customer's
  // every identify, the numbers in a campaign's replies): remembered per tenant, kind and value
  // as given, bounded so a flood of distinct values only evicts. Identifiers are short; a long
  // value (a trait holding text) is digested without being kept.
  const cacheEntries = opts.cacheEntries ?? 20_000
  const memo = new LRUCache<string, string>({ max: cacheEntries })
  const hash = (kind: DigestKind, value: string, tenantId: number) => {
    if (value.length > MEMO_VALUE_CHARS) return wrap(legacy(kind, value), tenantId)
    const at = `${tenantId}\u0000${kind}\u0000${value}`
    let d = memo.get(at)
    if (d === undefined) {
      d = wrap(legacy(kind, value), tenantId)
      memo.set(at, d)
    }
    return d
  }
  return {
    hash,
    digests(kind, value, tenantId) {
      return [hash(kind, value, tenantId), legacy(kind, value)]
    },
    rekey,
    contentDigest(text, tenantId) {
      return crypto.createHmac('sha256', tenantKey(tenantId)).update('content:').update(text).digest('hex')
    },
    maskName(name) {
      const n = name.trim()
      if (!n) return ''
      if (/^[\p{Script=Han}]+$/u.test(n)) return n[0] + '*'.repeat(Math.max(1, [...n].length - 1))
      return n
        .split(/\s+/)
        .map((w) => w[0] + '*'.repeat(Math.max(1, w.length - 1)))
        .join(' ')
    },
    threadSeed: () => ({ secret, cacheEntries }),
  }
}

/** The configured secret, or the data directory's own one (created on first use). */
export function resolvePiiSecret(configured: string | undefined, dataDir: string): string {
  if (configured) return configured
  const file = path.join(dataDir, 'pii.secret')
  try {
    return fs.readFileSync(file, 'utf8').trim()
  } catch {
    fs.mkdirSync(dataDir, { recursive: true })
    const secret = crypto.randomBytes(32).toString('base64url')
    fs.writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' })
    return secret
  }
}
