import crypto from 'node:crypto'
import os from 'node:os'
import type { AuditActor, AuditEntry, AuditSink } from '../core/audit.js'

/**
 * Commands run on the data directory itself (the `qianmian` CLI without `--server`) act without
 * an API key: the trail names the operating-system user who ran them, on this host.
 */
export function localActor(): AuditActor {
  let user = 'unknown'
  try {
    user = os.userInfo().username
  } catch {
    // Containers may run as a uid without a passwd entry: the entry still says it was the CLI.
  }
  return { keyId: 'cli', holder: `cli ${user}@${os.hostname()}`, roles: ['operator'], clientIp: 'local', requestId: `cli-${crypto.randomUUID()}` }
}

/** Runs a CLI action and records it, done or failed, with its outcome. */
export async function recordLocal<T>(sink: AuditSink, tenantId: number, entry: AuditEntry, action: () => Promise<T>, note?: (out: T) => Partial<AuditEntry>): Promise<T> {
  const actor = localActor()
  try {
    const out = await action()
    await sink.record(tenantId, actor, [{ ...entry, outcome: 'ok', ...note?.(out) }])
    return out
  } catch (err) {
    await sink.record(tenantId, actor, [{ ...entry, outcome: 'failed', detail: { ...entry.detail, error: err instanceof Error ? err.message.slice(0, 300) : String(err) } }])
    throw err
  }
}
