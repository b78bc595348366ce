import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { AppError } from '../core/errors.js'
import { survivorRowsSql } from '../core/identity.sql.js'
import { addDays, chDateTime } from '../core/time.js'
import { inHoldout } from '../core/holdout.js'
import type { ParamBinder } from '../core/params.js'
import { campaignFields, compileMessage, variantsOf, type Campaign, type CompiledMessage, type SavedCampaign } from './campaign.schema.js'
import { minutesOf, type Policy } from './policy.js'
import { planFields, type OpeningProduct } from './targeting.fields.js'
import { TAG_FIELD, templateSql, type TemplatePart } from './template.js'

/**
 * The one INSERT ... SELECT that turns an audience into targets, policy applied, inside the
 * engine: no customer row passes through JS, so a million customers target in seconds.
 *
 * The audience (`a`: customer_key, occ_date, due_base, no_hint) is joined with the profile,
 * the consent for the campaign's purpose and channel, the elder tag, the customer's budget
 * (queued non-security targets of the surrounding days, all campaigns) and the sources of the
 * template fields. Then, in order, the first rule that applies names the reason a customer is
 * left out (stored as a suppressed target): consent, a field the message needs and the customer
 * lacks, quiet hours that push the message past its validity, the caps of the campaign's
 * priority class, and only then the global holdout (marketing only) and the campaign's control
 * group. The two comparison groups are thus made of customers the campaign would have sent to,
 * like the treated ones, and the uplift compares like with like; who is in the global holdout
 * does not depend on the order (layouts share it), only which reason its rows record. Keys that
 * already have a target for this campaign and date are skipped: one target per (campaign,
 * customer, local date), whatever reruns happen.
 */

export interface AudienceSql {
  /** Rows of (customer_key UInt32, occ_date Date, due_base DateTime64(3, 'UTC'), no_hint String), unique per key and date. */
  sql: string
  /** The occ_date values it yields lie in [from, to] (YYYY-MM-DD). */
  dates: { from: string; to: string }
}

export interface TargetingSpec {
  tenantId: number
  campaign: SavedCampaign
  audience: AudienceSql
  policy: Policy
  timeZone: string
  now: Date
  /** Local date of `now`. */
  today: string
  holdoutPerMille: number
  runId: string
  trigger: 'schedule' | 'event' | 'manual'
  product?: OpeningProduct | undefined
  /** Every customer gets this variant instead of the split's (test sends of one variant). */
  variant?: string | undefined
}

const FAR_FUTURE = '2100-01-01 00:00:00.000'
export const ELDER_TAG = 'elder'
/** Who gets the elder variant (`el.elder = 1`); binds `elderTag` (ELDER_TAG). */
export const ELDER_JOIN = `LEFT JOIN (SELECT customer_key, toUInt8(1) AS elder FROM tag_values FINAL
           WHERE tenant_id = {tenant:UInt16} AND tag = {elderTag:String} AND is_deleted = 0 AND value = 'true') AS el ON el.customer_key = a.customer_key`

/**
 * The bucket of `inHoldout` (core/holdout.ts) as SQL, so the holdout is decided in the
 * engine for a million customers at once: MD5 of the customer number, its four little-endian
 * words folded into the salt's FNV-1a state (multiply, rotate), then murmur3's finaliser, modulo
 * 1000. The salt's state is a constant per query, computed in JS (`saltState`) and bound; every
 * step is UInt32 arithmetic, as JS's Math.imul and >>> are. `checkHoldoutParity` proves the two
 * agree before a process targets anything.
 */
export function saltState(salt: string, tenantId: number): number {
  let h = 0x811c9dc5 ^ tenantId
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193)
  return h >>> 0
}

const mul32 = (x: string, k: number) => `toUInt32(bitAnd(toUInt64(${x}) * ${k}, 4294967295))`
/** `f` applied to the value of `x` (named once, so the text does not grow with each step). */
const step = (x: string, f: (h: string) => string) => `arrayMap(h -> ${f('h')}, [${x}])[1]`

export function bucketSql(stateParam: string, customerNo: string): string {
  const words = [0, 1, 2, 3].map((i) => `reinterpretAsUInt32(substring(d, ${1 + 4 * i}, 4))`).join(', ')
  const rounds = `arrayFold((acc, w) -> bitRotateLeft(${mul32('bitXor(acc, w)', 0xcc9e2d51)}, 15), [${words}], toUInt32(${stateParam}))`
  let h = `arrayMap(d -> ${rounds}, [MD5(${customerNo})])[1]`
  h = step(h, (x) => `bitXor(${x}, bitShiftRight(${x}, 16))`)
  h = step(h, (x) => mul32(x, 0x85ebca6b))
  h = step(h, (x) => `bitXor(${x}, bitShiftRight(${x}, 13))`)
  h = step(h, (x) => mul32(x, 0xc2b2ae35))
  h = step(h, (x) => `bitXor(${x}, bitShiftRight(${x}, 16))`)
  return `(${h} % 1000)`
}
export const HOLDOUT_SALT = 'holdout'
export const controlSalt = (campaignId: string) => `push-control:${campaignId}`

/**
 * The holdout is shared with the layout experiments, which decide it in JS: a customer must fall
 * on the same side here. Checked against `inHoldout` once per process before the first run.
 */
export async function checkHoldoutParity(db: TenantDb): Promise<void> {
  const nos = Array.from({ length: 64 }, (_, i) => `P${i * 7919}`)
  const [r] = await db.query(
    `SELECT arrayMap(x -> toUInt8(${bucketSql('{state:UInt32}', 'x')} < 500), {nos:Array(String)}) AS inside`,
    { state: saltState(HOLDOUT_SALT, db.tenantId), nos },
    z.object({ inside: z.array(z.coerce.number()) }),
  )
  const expected = nos.map((n) => (inHoldout(db.tenantId, n, 500) ? 1 : 0))
  if (!r || r.inside.join() !== expected.join()) throw new AppError('INTERNAL', 'The push holdout no longer matches core/holdout.ts inHoldout.')
}

/**
 * The instant of a local wall-clock reading in the tenant's zone (`{tz:String}`): `day` an SQL
 * Date, `hhmm` an SQL String 'HH:MM'. Built from the date and the reading, not as minutes after
 * local midnight, which are an hour off on a day the clocks change. The engine reads a time the
 * clocks skip (02:30 where they move from 02:00 to 03:00) with the offset after the change,
 * which lands an hour early, before the change; applying the offset in force at that instant
 * instead gives the reading after the change (03:30), so the result is never earlier than the
 * clock says. A reading the clocks repeat is its first pass.
 */
export function wallClockSql(day: string, hhmm: string): string {
  const text = `concat(toString(${day}), ' ', ${hhmm}, ':00')`
  return `(toDateTime64(${text}, 3, 'UTC') - toIntervalSecond(timeZoneOffset(toDateTime(${text}, {tz:String}))))`
}

type Texts = { title: TemplatePart[] | null; body: TemplatePart[] }

/**
 * The text each customer gets: elder variant where there is one and `elder` (an SQL condition)
 * holds (its missing title falls back to the standard one), in English where `en` holds.
 * Targeting and the template preview (template.preview.ts) both fill messages with it.
 */
export function messagePartSql(msg: CompiledMessage, part: 'title' | 'body', b: ParamBinder, field: (name: string) => string, when: { en: string; elder: string }): string {
  const sql = (t: Texts, fallback?: Texts) => {
    const p = t[part] ?? fallback?.[part] ?? null
    return p ? templateSql(p, b, field) : b.str('')
  }
  const std = `if(${when.en}, ${sql(msg.standard.en)}, ${sql(msg.standard.zh)})`
  if (!msg.elder) return std
  return `if(${when.elder}, if(${when.en}, ${sql(msg.elder.en, msg.standard.en)}, ${sql(msg.elder.zh, msg.standard.zh)}), ${std})`
}

/**
 * A customer's variant, as the 1-based index into the campaign's variants: a hash of the campaign
 * id and the customer key falls in [0, 100), and the variants own cumulative ranges of it in
 * their order (weights 50/30/20: A [0, 50), B [50, 80), C [80, 100)). The same customer lands in
 * the same bucket on every run. Changing the split moves only the buckets whose owner changed
 * (50/50 to 60/40 moves [50, 60) from B to A, nobody else); targets already written keep the
 * variant they were sent. The hash is salted apart from the holdout's and the control group's,
 * so the split is independent of both (and their customers get no message at all).
 */
export function variantIndexSql(customerKey: string): string {
  return `arrayFirstIndex(u -> (sipHash64(concat({vsalt:String}, toString(${customerKey}))) % 100) < u, {vups:Array(UInt8)})`
}

/** The cumulative upper bounds of the variants' ranges, in their order. */
export function variantBounds(weights: readonly number[]): number[] {
  let at = 0
  return weights.map((w) => (at += w))
}

/** `sql` writes the targets; `decided` is its SELECT (one row per target with its `reason`, '' when queued), which a dry run counts instead. */
export function targetingSql(s: TargetingSpec, b: ParamBinder): { sql: string; decided: string; params: Record<string, unknown> } {
  const c = s.campaign
  const en = `c.language = 'en'`
  const variants = variantsOf(c)
  const msgs = variants.map((v) => compileMessage(v.message))
  const fields = planFields(campaignFields(c), b, { en, product: s.product })
  const anyElder = msgs.some((m) => m.elder)
  const elder = anyElder ? 'el.elder = 1' : '0'
  // vi: the customer's variant (1-based); a campaign with one message has one.
  const forced = s.variant === undefined ? -1 : variants.findIndex((v) => v.id === s.variant)
  if (s.variant !== undefined && forced < 0) throw new AppError('VALIDATION_FAILED', `Campaign ${c.id} has no variant ${s.variant}.`, { issues: [{ field: 'variant', message: `no variant ${s.variant}` }] })
  const vi = variants.length < 2 ? '1' : forced >= 0 ? String(forced + 1) : variantIndexSql('a.customer_key')
  // The elder text is used where the customer's variant has one.
  const elderUsed = variants.length < 2 ? (msgs[0]?.elder ? elder : '0') : anyElder ? `(${elder} AND vi IN (${msgs.flatMap((m, i) => (m.elder ? [i + 1] : [])).join(', ')}))` : '0'
  // The personalization switch: a customer who turned it off gets no marketing chosen or worded
  // by their characteristics (a segment or rule audience, a tag date, tag values in the text).
  // Such a message is suppressed for them rather than sent with the tag parts left out.
  const personalized = isPersonalized(c)
  // Consents, sends and targets of a customer merged into another are the survivor's (the key
  // targeted): its decision for a pair is the latest under any of its keys.
  const consent = (pair: string) => `LEFT JOIN (SELECT customer_key, argMax(granted, updated_at) AS granted, toUInt8(1) AS known
       FROM ${survivorRowsSql('consents', ['granted', 'updated_at'], pair, { final: true })} GROUP BY customer_key)`
  const joins = [
    `LEFT JOIN (SELECT customer_key, customer_no, language, name_masked, deleted FROM customers FINAL WHERE tenant_id = {tenant:UInt16}) AS c ON c.customer_key = a.customer_key`,
    `${consent('x.purpose = {purpose:String} AND x.channel = {channel:String}')} AS cs ON cs.customer_key = a.customer_key`,
    ...(personalized ? [`${consent(`x.purpose = 'personalization'`)} AS pz ON pz.customer_key = a.customer_key`] : []),
    // One budget across campaigns: what was released (queued) on the days a new target may spend.
    // Found by expiry, not by occurrence date: a target may go out long after its date (a once
    // campaign targeted late, a late event). A queued target expires after it is due, so one
    // sending on bfrom or later expires after a day before bfrom began in UTC.
    `LEFT JOIN (SELECT customer_key, groupArray(send_date) AS sent FROM ${survivorRowsSql(
      'push_targets',
      ['send_date'],
      `x.expires_at > toDateTime64(subtractDays({bfrom:Date}, 1), 3, 'UTC') AND x.send_date BETWEEN {bfrom:Date} AND {bto:Date}
         AND x.status = 'queued' AND x.purpose != 'security'`,
    )} GROUP BY customer_key) AS bu ON bu.customer_key = a.customer_key`,
    ...(anyElder ? [ELDER_JOIN] : []),
    ...fields.joins,
  ]
  const pickOne = (m: CompiledMessage, part: 'title' | 'body') => messagePartSql(m, part, b, fields.expr, { en, elder })
  const pick = (part: 'title' | 'body') =>
    msgs.length === 1 ? pickOne(msgs[0]!, part) : `multiIf(${msgs.map((m, i) => `vi = ${i + 1}, ${pickOne(m, part)}`).join(', ')}, NULL)`
  const custNo = `if(c.customer_no != '', c.customer_no, a.no_hint)`
  const consentOk = {
    explicit: 'cs.known = 1 AND cs.granted = 1',
    unless_refused: 'NOT (cs.known = 1 AND cs.granted = 0)',
    always: '1',
  }[c.purpose === 'marketing' ? 'explicit' : s.policy.consent[c.purpose]]
  const holdout = c.purpose === 'marketing' && s.holdoutPerMille > 0 ? `${bucketSql('{hstate:UInt32}', custNo)} < {holdout:UInt16}` : '0'
  const control = c.controlPerMille > 0 ? `${bucketSql('{cstate:UInt32}', custNo)} < {control:UInt16}` : '0'

  const joined = `SELECT a.customer_key AS k, a.occ_date AS occ, a.due_base AS due_base, ${custNo} AS cust_no,
      toUInt32(${vi}) AS vi, ${variants.length < 2 ? "''" : '{vids:Array(String)}[vi]'} AS message_variant,
      if(${en}, 'en', 'zh') AS lang, if(${elderUsed}, 'elder', 'standard') AS variant,
      toUInt8(${consentOk}) AS consent_ok, cs.known AS consent_known, toUInt8(${personalized ? 'pz.known = 1 AND pz.granted = 0' : '0'}) AS pz_off, toUInt8(${holdout}) AS in_holdout, toUInt8(${control}) AS in_control,
      bu.sent AS sent, ${pick('title')} AS title, ${pick('body')} AS body
    FROM (${s.audience.sql}) AS a
    ${joins.join('\n    ')}
    WHERE c.deleted = 0 AND cust_no != ''
      AND (a.customer_key, a.occ_date) NOT IN (SELECT customer_key, local_date FROM ${survivorRowsSql(
        'push_targets',
        ['local_date'],
        'x.campaign_id = {cid:String} AND x.local_date BETWEEN {dfrom:Date} AND {dto:Date}',
      )})`

  // Quiet hours in the tenant's local time; [start, end) may wrap midnight. Security messages are
  // released inside them (flagged); the others wait for the end of the quiet period: its end on
  // the local clock, the same day, or the next one when the period wraps and began that evening.
  const q = s.policy.quietHours
  const security = c.purpose === 'security'
  const quiet = !q ? '0' : minutesOf(q.start) < minutesOf(q.end) ? 'mday >= {qs:UInt16} AND mday < {qe:UInt16}' : '(mday >= {qs:UInt16} OR mday < {qe:UInt16})'
  const deferred = wallClockSql(`addDays(toDate(due0, {tz:String}), if({qs:UInt16} > {qe:UInt16} AND mday >= {qs:UInt16}, 1, 0))`, '{qend:String}')
  const timed = `SELECT *, toUInt8(${quiet}) AS quiet, ${security || !q ? 'due0' : `if(quiet = 1, ${deferred}, due0)`} AS due_at, toDate(due_at, {tz:String}) AS send_date
    FROM (SELECT *, toHour(due0, {tz:String}) * 60 + toMinute(due0, {tz:String}) AS mday
          FROM (SELECT *, greatest(due_base, {now:DateTime64(3, 'UTC')}, {vfrom:DateTime64(3, 'UTC')}) AS due0 FROM (${joined})))`

  const capped = !security && c.priority !== 'critical'
  // The comparison groups come last: a customer is held out or in the control group only where
  // nothing else would have kept the message from them.
  const reasons = [
    `consent_ok = 0, if(consent_known = 1, 'consent_refused', 'no_consent')`,
    `pz_off = 1, 'personalization_off'`,
    `isNull(title) OR isNull(body), 'missing_field'`,
    `due_at >= {until:DateTime64(3, 'UTC')}, if(quiet = 1, 'quiet_hours', 'outside_validity')`,
    ...(capped
      ? [`arrayCount(d -> d = send_date, sent) >= {capDay:UInt16}, 'cap_day'`, `arrayCount(d -> d > subtractDays(send_date, 7) AND d <= send_date, sent) >= {capWeek:UInt16}, 'cap_week'`]
      : []),
    `in_holdout = 1, 'holdout'`,
    `in_control = 1, 'control_group'`,
  ]
  const decided = `SELECT *, multiIf(${reasons.join(', ')}, '') AS reason FROM (${timed})`

  const sql = `INSERT INTO push_targets (tenant_id, campaign_id, local_date, customer_key, target_id, campaign_version, run_id, customer_no,
      purpose, channel, priority, status, reason, due_at, expires_at, send_date, quiet_exempt, language, variant, message_variant, title, body, trigger, created_at)
    SELECT {tenant:UInt16}, {cid:String}, occ, k, lower(hex(MD5(concat({tprefix:String}, toString(k), ':', toString(occ))))),
      {ver:UInt32}, {run:UInt64}, cust_no, {purpose:String}, {channel:String}, {priority:String},
      if(reason = '', 'queued', 'suppressed'), reason, due_at,
      least(due_at + toIntervalMinute({ttl:UInt32}), {until:DateTime64(3, 'UTC')}), send_date,
      toUInt8(quiet = 1 AND ${security ? 1 : 0} = 1), lang, variant, message_variant, ifNull(title, ''), ifNull(body, ''), {trigger:String}, {now:DateTime64(3, 'UTC')}
    FROM (${decided})`

  const cap = capped ? s.policy.caps[c.priority as 'low' | 'normal' | 'high'] : { day: 0, week: 0 }
  const params: Record<string, unknown> = {
    ...b.params,
    cid: c.id,
    ver: c.version,
    run: s.runId,
    purpose: c.purpose,
    channel: c.channel,
    priority: c.priority,
    trigger: s.trigger,
    tz: s.timeZone,
    now: chDateTime(s.now),
    today: s.today,
    vfrom: c.validFrom ? chDateTime(new Date(c.validFrom)) : '1970-01-01 00:00:00.000',
    until: c.validUntil ? chDateTime(new Date(c.validUntil)) : FAR_FUTURE,
    ttl: c.ttlMinutes,
    dfrom: s.audience.dates.from,
    dto: s.audience.dates.to,
    // The sends the caps count, by the day they go out: the new targets go out on their dates, or
    // today when those have passed (a target is never due before now; a once campaign targeted
    // late, a late event), or a day later (quiet hours end the next morning). So from the week
    // before the earlier of the first date and today, to two days after the later of the last
    // date and today.
    bfrom: addDays(s.audience.dates.from < s.today ? s.audience.dates.from : s.today, -7),
    bto: addDays(s.audience.dates.to > s.today ? s.audience.dates.to : s.today, 2),
    tprefix: `${s.tenantId}:${c.id}:`,
    elderTag: ELDER_TAG,
    hstate: saltState(HOLDOUT_SALT, s.tenantId),
    holdout: Math.max(0, Math.min(1000, Math.trunc(s.holdoutPerMille))),
    cstate: saltState(controlSalt(c.id), s.tenantId),
    control: c.controlPerMille,
    vsalt: `push-variant:${c.id}:`,
    vids: variants.map((v) => v.id),
    vups: variantBounds(variants.map((v) => v.weight)),
    qs: q ? minutesOf(q.start) : 0,
    qe: q ? minutesOf(q.end) : 0,
    qend: q ? q.end : '00:00',
    capDay: cap.day,
    capWeek: cap.week,
  }
  return { sql, decided, params }
}

/**
 * Marketing chosen or worded by the customer's characteristics (a segment or rule audience, a tag
 * date, tag values in the text): what the personalization switch turns off, at targeting and at
 * the pull (a switch turned off after targeting).
 */
export function isPersonalized(c: Pick<Campaign, 'purpose' | 'audience' | 'dateTrigger' | 'message' | 'variants'>): boolean {
  return c.purpose === 'marketing' && (!c.audience.all || c.dateTrigger?.on === 'tag_date' || campaignFields(c).some((f) => TAG_FIELD.test(f)))
}
