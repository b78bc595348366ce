import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { chDateTime } from '../core/time.js'
import { MAX_TTL_MINUTES } from './campaign.schema.js'
import type { PulledTarget } from './lease.manager.js'
import { TEST_SUFFIX } from './test-send.js'
import { forEachTsvRow, readAll, unescapeTsv } from './tsv-read.js'

/**
 * The read behind a lease refill (lease.manager.ts): a tenant's next due targets, in the order
 * pulls hand them out, as queue rows. What makes them due, and that order, are decided here.
 */

/** The columns a refill reads, in order (TabSeparated). */
const QUEUE_COLUMNS = [
  'target_id',
  'campaign_id',
  'campaign_version',
  'customer_key',
  'customer_no',
  'toString(channel)',
  'toString(purpose)',
  'toString(priority)',
  'language',
  'toString(variant)',
  'title',
  'body',
  'toString(due_at)',
  'toString(expires_at)',
  'toUnixTimestamp64Milli(expires_at)',
  'toString(status)',
  'message_variant',
] as const

/** An engine DateTime64 in UTC ('2026-11-28 10:00:00.000') as ISO 8601. */
const iso = (s: string) => `${s.replace(' ', 'T')}Z`

/** A queued target: what a pull hands out (all but the lease), and what the queue itself needs. */
export interface QueueRow {
  target: Omit<PulledTarget, 'leaseId' | 'leaseUntil'>
  /** The campaign id as stored: a test target's carries TEST_SUFFIX, and its leases and outcomes keep it, out of the campaign's stats. */
  storedCid: string
  customerKey: number
  expMs: number
}

/** Fields as they come (still escaped): ids, enums, dates and numbers never hold an escape. */
function toQueueRow(f: string[]): QueueRow {
  if (f.length !== QUEUE_COLUMNS.length) throw new AppError('INTERNAL', `A queue row has ${f.length} fields, not ${QUEUE_COLUMNS.length}.`)
  const test = f[15] === 'test'
  return {
    target: {
      targetId: f[0]!,
      idempotencyKey: f[0]!,
      // A campaign id has no '~' (CAMPAIGN_ID): the suffix's first place ends it.
      campaignId: test ? f[1]!.slice(0, f[1]!.indexOf(TEST_SUFFIX)) : f[1]!,
      campaignVersion: Number(f[2]),
      customerNo: unescapeTsv(f[4]!),
      channel: f[5]!,
      purpose: f[6]!,
      priority: f[7]!,
      language: unescapeTsv(f[8]!),
      variant: f[9]!,
      messageVariant: f[16]!,
      title: unescapeTsv(f[10]!),
      body: unescapeTsv(f[11]!),
      dueAt: iso(f[12]!),
      expiresAt: iso(f[13]!),
      test,
    },
    storedCid: f[1]!,
    customerKey: Number(f[3]),
    expMs: Number(f[14]),
  }
}

/** A target id (32 hex digits of an MD5) as the UInt128 it spells. */
const ID128 = (column: string) => `reinterpretAsUInt128(unhex(${column}))`

/**
 * The next `chunk` targets a pull may hand out at `now`: queued (or test sends), due, not
 * expired, of an active campaign (`campaigns`), without a final outcome, not under a running
 * lease nor leased `maxAttempts` times already, and inside quiet hours (`quiet`) security
 * messages only. A duplicate row (a replacing merge not yet done) is read once.
 */
export async function readDueTargets(db: TenantDb, o: { campaigns: string[]; now: number; chunk: number; quiet: boolean; maxAttempts: number }): Promise<QueueRow[]> {
  // A deliverable target is found by its expiry, not by its occurrence date (the sort key's),
  // which says nothing of when it goes out: a once campaign targeted late, or an event trigger
  // fed a late event, makes targets due now under a date long past. A skip index on expires_at
  // (sql/030) keeps this read to the granules of live targets, as a bound on the date did.
  // Leases and outcomes of a live target came after it was due, so within the longest time to
  // live before now (and a day to spare).
  const sinceAt = chDateTime(o.now - (MAX_TTL_MINUTES + 1440) * 60_000)
  // Two steps in one query: the next `chunk` due targets are chosen by a narrow sort (ids,
  // priority, due time), then their wide rows (message text) are read in queue order, as
  // TabSeparated (several times faster to parse than JSON at this size). The engine sorts
  // them: a JS sort and Set over 100,000 rows took about a fifth of a refill.
  //
  // Done or held targets are left out by one anti-join on the ids' 128 bits: a target id is
  // the hex of an MD5 (targeting.sql.ts), so unhex is exact, and a set of UInt128 is built
  // and probed faster than one of strings. Measured at 300,000 delivered of 1M, the inner
  // choice took ~210 ms this way against ~330 ms with two string sets.
  // Test sends (test-send.ts) are handed out whatever their campaign's status: their stored ids
  // are read here (one per message variant sent: the id, the suffix, '~' and the send id, ':' and
  // the variant; testCampaignId in test-send.ts).
  const held = `(campaign_id IN {cids:Array(String)} OR campaign_id IN (SELECT concat(campaign_id, {testSuffix:String}, '~', send_id, v) FROM push_test_sends
    ARRAY JOIN if(empty(variants), [''], arrayMap(x -> concat(':', x), variants)) AS v
    WHERE tenant_id = {tenant:UInt16} AND queued > 0 AND at >= {sinceAt:DateTime64(3, 'UTC')}))`
  const live = `tenant_id = {tenant:UInt16} AND ${held} AND expires_at > {now:DateTime64(3, 'UTC')}`
  // Security messages first (anti-fraud tips cannot wait behind a reminder of a higher class),
  // then the highest class, then the oldest due.
  const order = `purpose = 'security' DESC, priority DESC, due_at`
  const due = `${live}
    AND status IN ('queued', 'test') AND due_at <= {now:DateTime64(3, 'UTC')}
    AND (purpose = 'security' OR status = 'test' OR {quiet:UInt8} = 0)
    AND ${ID128('target_id')} NOT IN (
      SELECT ${ID128('target_id')} FROM push_outcomes WHERE tenant_id = {tenant:UInt16} AND final = 1 AND at >= {sinceAt:DateTime64(3, 'UTC')}
      UNION ALL
      SELECT ${ID128('target_id')} AS id FROM push_leases WHERE tenant_id = {tenant:UInt16} AND leased_at >= {sinceAt:DateTime64(3, 'UTC')}
      GROUP BY id
      HAVING argMax(lease_until, leased_at) > {now:DateTime64(3, 'UTC')} OR countIf(kind = 'lease') >= {attempts:UInt16})`
  const text = await readAll(
    await db.stream(
      `SELECT ${QUEUE_COLUMNS.join(', ')} FROM push_targets
       WHERE ${live} AND target_id IN (SELECT target_id FROM push_targets WHERE ${due} ORDER BY ${order} LIMIT {chunk:UInt32})
       ORDER BY ${order}, target_id
       FORMAT TabSeparated`,
      { cids: o.campaigns, testSuffix: TEST_SUFFIX, sinceAt, now: chDateTime(o.now), attempts: o.maxAttempts, quiet: o.quiet ? 1 : 0, chunk: o.chunk },
    ),
  )
  // A duplicate row (a replacing merge not yet done) is read once: in this order, copies of a
  // target are adjacent.
  const rows: QueueRow[] = []
  forEachTsvRow(text, (f) => {
    const r = toQueueRow(f)
    if (rows.length === 0 || rows[rows.length - 1]!.target.targetId !== r.target.targetId) rows.push(r)
  })
  return rows
}
