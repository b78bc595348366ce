import crypto from 'node:crypto'

/**
 * The dedup index's key (sql/024_ingest_dedup_digests.sql), in its two forms: computed by the
 * writer in JavaScript for the ids it asks about, and by the engine from stored rows (the
 * writer's recovery, erasure). Both are the first 8 bytes of MD5(`tenant_id:message_id`), read
 * as a little-endian UInt64; the migration's view spells the same expression.
 */

/** A message id's key in a flush (a tenant id has no ':'); the index holds its digest. */
export const dedupKey = (tenantId: number, messageId: string): string => `${tenantId}:${messageId}`

/** The digest of a row with `tenant_id` and `message_id` columns, as the engine computes it. */
export const DEDUP_DIGEST_SQL = "reinterpretAsUInt64(MD5(concat(toString(tenant_id), ':', message_id)))"

/**
 * The digests of `dedupKey`s as one string of 16 hex digits each (the first 8 bytes of each MD5),
 * the form the writer's lookup takes them in.
 */
export function dedupDigests(keys: readonly string[]): string {
  let out = ''
  for (const k of keys) out += crypto.hash('md5', k, 'hex').slice(0, 16)
  return out
}
