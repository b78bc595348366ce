import { execFileSync } from 'node:child_process'
import { z } from 'zod'
import type { SystemDb, TenantDb } from '../core/db.js'
import { addDays, chDateTime, zonedMidnight } from '../core/time.js'
import type { ParamBinder } from '../core/params.js'

/**
 * What several scenarios need: the commit measured, waiting for the engine's background work
 * between phases, and property filters written plainly for the naive and floor queries (kept
 * apart from the pipeline's compiler on purpose, so a baseline does not move with it).
 */

/** The commit measured, `+dirty` when the working tree has changes (the figures depend on it). */
export function codeVersion(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty=+dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

/** Waits (up to 10 minutes) until no merge or mutation is running; returns the seconds waited. */
export async function settle(system: SystemDb): Promise<number> {
  const t0 = performance.now()
  while (performance.now() - t0 < 600_000) {
    const [r] = await system.query(
      `SELECT (SELECT count() FROM system.merges) + (SELECT count() FROM system.mutations WHERE is_done = 0) AS n`,
      {},
      z.object({ n: z.coerce.number() }),
    )
    if (!r?.n) break
    await new Promise((res) => setTimeout(res, 500))
  }
  return (performance.now() - t0) / 1000
}

/** A property filter's condition on the raw JSON properties, typed by the value compared. */
export function propertyCondition(f: { property: string; op: string; value?: unknown }, b: ParamBinder): string {
  const key = b.str(f.property)
  if (f.op === 'exists') return `JSONHas(properties, ${key})`
  const values = (Array.isArray(f.value) ? f.value : [f.value]) as (string | number | boolean)[]
  const cmp = (v: string | number | boolean, sym: string) =>
    typeof v === 'number'
      ? `JSONExtractFloat(properties, ${key}) ${sym} ${b.num(v)}`
      : typeof v === 'boolean'
        ? `JSONExtractBool(properties, ${key}) ${sym} ${v ? 1 : 0}`
        : `JSONExtractString(properties, ${key}) ${sym} ${b.str(v)}`
  if (f.op === 'in' || f.op === 'not_in') return `${f.op === 'in' ? '' : 'NOT '}(${values.map((v) => cmp(v, '=')).join(' OR ')})`
  const sym = ({ eq: '=', ne: '!=', gt: '>', gte: '>=', lt: '<', lte: '<=' } as Record<string, string>)[f.op]
  if (!sym || values[0] === undefined) throw new Error(`cannot compile property filter ${JSON.stringify(f)}`)
  return cmp(values[0], sym)
}

/** Copies the events of the local day before `today` onto `today` as new events; returns how many. */
export async function appendDay(db: TenantDb, tz: string, today: string): Promise<number> {
  const from = chDateTime(zonedMidnight(addDays(today, -1), tz))
  const to = chDateTime(zonedMidnight(today, tz))
  await db.command(
    `INSERT INTO events (tenant_id, customer_key, timestamp, type, event, message_id, anonymous_id, user_id, session_id,
                         properties, context, sent_at, received_at, product_id, amount, violations)
     SELECT {tenant:UInt16}, customer_key, timestamp + INTERVAL 1 DAY, type, event, concat(message_id, '-d1'), anonymous_id, user_id, session_id,
            properties, context, sent_at + INTERVAL 1 DAY, now64(3), product_id, amount, violations
     FROM events
     WHERE tenant_id = {tenant:UInt16} AND timestamp >= {from:DateTime64(3, 'UTC')} AND timestamp < {to:DateTime64(3, 'UTC')}
     SETTINGS insert_allow_materialized_columns = 1`,
    { from, to },
  )
  const [r] = await db.query(
    `SELECT count() AS n FROM events WHERE tenant_id = {tenant:UInt16} AND timestamp >= {to:DateTime64(3, 'UTC')} AND endsWith(message_id, '-d1')`,
    { to },
    z.object({ n: z.coerce.number() }),
  )
  return r?.n ?? 0
}
