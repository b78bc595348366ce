import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/**
 * Protection of personal fields ("minimum necessary"): identifiers that are only ever matched,
 * such as a mobile number or national id, are stored as keyed HMAC-SHA256 digests; display names
 * are stored masked. The key is QIANMIAN_PII_SECRET, or for the embedded default a random secret
 * kept (mode 0600) in the data directory on first start.
 */
export interface Pii {
  /** Keyed digest of an identifier after normalization (digits only for phones and ids). */
  hash(kind: 'phone' | 'national_id' | 'card' | 'email' | 'name', value: string): string
  /** 张三丰 -> 张**, Alice Wang -> A**** W*** */
  maskName(name: string): string
}

export function createPii(secret: string): Pii {
  return {
    hash(kind, value) {
      const normalized = kind === 'email' || kind === 'name' ? value.trim().toLowerCase() : value.replace(/[^0-9Xx]/g, '').toUpperCase()
      return crypto.createHmac('sha256', secret).update(`${kind}:${normalized}`).digest('hex')
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
