import type { Pii } from '../core/pii.js'
import { chDateTime } from '../core/time.js'
import { branchCode, type DemoBank } from './demo.banks.js'
import { formatDate, formatDateTime, sameDayYearsAgo } from './demo.dates.js'
import { createRng, STREAM, type Rng } from './demo.random.js'

/**
 * Customer profiles, made in JavaScript because two columns need the process's PII service:
 * the phone digest (keyed HMAC whose secret never leaves `pii`) and the masked name. Everything
 * else about a customer is derived engine-side from these rows. The phone number and full name
 * exist only in local variables here; neither is stored nor logged.
 */

const DAY = 86_400_000
const YEAR = 365.2425 * DAY

// Rural member banks skew old: about a third of customers are 60 or older.
const AGE_BANDS: readonly (readonly [readonly [number, number], number])[] = [
  [[18, 24], 7],
  [[25, 34], 13],
  [[35, 44], 15],
  [[45, 54], 17],
  [[55, 59], 15],
  [[60, 69], 18],
  [[70, 79], 11],
  [[80, 92], 4],
]

type Occupation = 'farmer' | 'migrant_worker' | 'retiree' | 'small_business' | 'civil_servant' | 'student' | 'teacher'

function occupationFor(age: number, rng: Rng): Occupation {
  if (age < 23) return rng.weighted([['student', 65], ['migrant_worker', 18], ['farmer', 7], ['small_business', 10]] as const)
  if (age < 60) {
    return rng.weighted([
      ['farmer', 31],
      ['migrant_worker', age < 50 ? 26 : 12],
      ['small_business', 18],
      ['civil_servant', 6],
      ['teacher', 5],
      ['student', age < 26 ? 8 : 0],
      ['retiree', age >= 55 ? 14 : 0],
    ] as const)
  }
  return rng.weighted([['retiree', 58], ['farmer', 39], ['small_business', 3]] as const)
}

// Common surnames, most frequent first, with rough relative frequencies.
// prettier-ignore
const SURNAMES: readonly (readonly [string, number])[] = [
  ['王', 72], ['李', 71], ['张', 68], ['刘', 54], ['陈', 45], ['杨', 31], ['黄', 24], ['赵', 22], ['吴', 21], ['周', 20],
  ['徐', 15], ['孙', 15], ['马', 14], ['朱', 13], ['胡', 12], ['郭', 12], ['何', 11], ['林', 10], ['高', 10], ['罗', 10],
  ['郑', 9], ['梁', 8], ['谢', 7], ['宋', 6], ['唐', 6], ['许', 6], ['韩', 6], ['邓', 6], ['冯', 6], ['曹', 5],
  ['彭', 5], ['曾', 5], ['肖', 5], ['田', 5], ['董', 5], ['潘', 4], ['袁', 4], ['蔡', 4], ['蒋', 4], ['余', 4],
]
const GIVEN = [...'伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国志红梅春生德福海燕文辉金凤莲荣亮成林淑珍云']
const PHONE_PREFIXES = ['130', '131', '132', '133', '135', '136', '137', '138', '139', '150', '151', '152', '153', '155', '156', '157', '158', '159', '166', '177', '180', '181', '182', '183', '185', '186', '187', '188', '189', '191', '198', '199']

export interface CustomerContext {
  bank: DemoBank
  tenantId: number
  seed: number
  pii: Pii
  /** Generation time; ages, opening dates and updated_at derive from it. */
  now: Date
  /** The bank's local date at `now`, YYYY-MM-DD. */
  today: string
}

export const CUSTOMER_COLUMNS = [
  'tenant_id', 'customer_key', 'customer_no', 'gender', 'birth_date', 'region_code', 'branch_code', 'occupation',
  'phone_hash', 'name_masked', 'language', 'elder_mode', 'opened_at', 'updated_at', 'deleted',
] as const

/**
 * Yields rows (in CUSTOMER_COLUMNS order) for keys 1..count in chunks of `chunkRows`. The
 * stream of random draws runs in key order, so the same seed gives the same rows however the
 * caller batches them.
 */
export function* customerRows(ctx: CustomerContext, count: number, chunkRows: number): Generator<unknown[][]> {
  const rng = createRng(ctx.seed, STREAM.customers(ctx.bank.index))
  const nowMs = ctx.now.getTime()
  const [ty, tm, td] = ctx.today.split('-').map(Number) as [number, number, number]
  const updatedAt = chDateTime(ctx.now)
  const regions = ctx.bank.regions.map((r) => [r, r.weight] as const)
  let rows: unknown[][] = []
  for (let key = 1; key <= count; key++) {
    const age = rng.int(...rng.weighted(AGE_BANDS))
    // Birthdays fall uniformly over the year, so about 2% land in any coming week.
    const birthMs = sameDayYearsAgo(ty, tm, td, age) - rng.int(0, 364) * DAY
    const unknownBirth = rng.chance(0.003)
    const r = rng.float()
    const gender = r < 0.495 ? 'male' : r < 0.99 ? 'female' : 'unknown'
    const occupation = occupationFor(age, rng)
    const region = rng.weighted(regions)
    const branch = branchCode(ctx.bank, region, rng.int(1, region.branches))
    const surname = rng.weighted(SURNAMES)
    const given = rng.pick(GIVEN) + (rng.chance(0.78) ? rng.pick(GIVEN) : '')
    // Unique within the bank: the last eight digits are a bijection of the key (for n < 10^8).
    const phone = rng.pick(PHONE_PREFIXES) + String((key * 7_368_787 + ctx.seed + ctx.bank.index * 1_000_003) % 100_000_000).padStart(8, '0')
    const language = rng.chance(age < 45 ? 0.03 : 0.005) ? 'en' : 'zh'
    const elderMode = age >= 60 && rng.chance(Math.min(0.8, 0.3 + 0.025 * (age - 60))) ? 1 : 0
    // Rural credit co-operatives go back decades: relationships spread over up to 30 years.
    const years = Math.min(age - 16, 30) * (0.1 + 0.9 * rng.float())
    const openedAt = formatDateTime(Math.max(nowMs - years * YEAR - rng.int(0, 86_399) * 1000, birthMs + 16 * YEAR))
    rows.push([
      ctx.tenantId,
      key,
      ctx.bank.customerPrefix + String(key).padStart(10, '0'),
      gender,
      unknownBirth ? null : formatDate(birthMs),
      region.code,
      branch,
      occupation,
      ctx.pii.hash('phone', phone, ctx.tenantId),
      ctx.pii.maskName(surname + given),
      language,
      elderMode,
      openedAt,
      updatedAt,
      0,
    ])
    if (rows.length === chunkRows || key === count) {
      yield rows
      rows = []
    }
  }
}
