import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/**
 * Protection of personal fields ("minimum necessary"): identifiers that are only ever matched,
 * such as a mobile number or national id, are stored as keyed HMAC-SHA256 digests; display names
 * are stored masked. The master secret is QIANMIAN_PII_SECRET, or for the embedded default a
 * random secret kept (mode 0600) in the data directory on first start.
 *
 * Each bank digests with its own key, HMAC(master, "tenant:" + id): the same identity number has
 * unrelated digests in two banks, so customers cannot be linked across banks by their digests.
 * Those digests are written `k2:<hex>`; a bare hex digest was made with the master secret itself
 * before per-bank keys (version 1). An HMAC cannot be re-keyed without the value it was made
 * from, so version-1 digests change only when the raw value arrives again (a re-import, an
 * identify) or are erased; `digests()` gives both forms for matching until then.
 */
export type DigestKind = 'phone' | 'national_id' | 'card' | 'email' | 'name'

export interface Pii {
  /** The bank's keyed digest of an identifier after normalization (digits only for phones and ids). */
  hash(kind: DigestKind, value: string, tenantId: number): string
  /** The forms a stored digest of this value may take in the bank: its own key's, then the shared key's (version 1). */
  digests(kind: DigestKind, value: string, tenantId: number): [current: string, legacy: string]
  /** 张三丰 -> 张**, Alice Wang -> A**** W*** */
  maskName(name: string): string
}

export const TENANT_DIGEST_PREFIX = 'k2:'

const normalizeIdentifier = (kind: DigestKind, value: string) =>
  kind === 'email' || kind === 'name' ? value.trim().toLowerCase() : value.replace(/[^0-9Xx]/g, '').toUpperCase()

export function createPii(secret: string): Pii {
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
  const hash = (kind: DigestKind, value: string, tenantId: number) =>
    TENANT_DIGEST_PREFIX + crypto.createHmac('sha256', tenantKey(tenantId)).update(`${kind}:${normalizeIdentifier(kind, value)}`).digest('hex')
  return {
    hash,
    digests(kind, value, tenantId) {
      return [hash(kind, value, tenantId), crypto.createHmac('sha256', secret).update(`${kind}:${normalizeIdentifier(kind, value)}`).digest('hex')]
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
