import { sqlU, sqlUuid } from './demo.random.js'

/**
 * Customer traits as SQL expressions over a `customers` row, shared by every engine-side
 * generator so that, for instance, the anonymous ids written to `identities` are exactly the
 * ones the events carry. They need the bound parameters {seed:UInt64}, {bank:UInt8} and
 * {today:Date32}.
 */

/**
 * Salts for the hash streams. Each draw has its own number, so adding a draw never changes
 * another one; never reuse or renumber a salt.
 */
export const SALT = {
  devices: 1,
  anonymousId: 2,
  messageId: 3,
  consentPrivacy: 10,
  consentGrant: 11,
  consentTime: 12,
  consentSource: 13,
  aum: 20,
  accountHas: 22,
  accountWeight: 23,
  accountOpened: 24,
  accountStatus: 25,
  accountDormant: 26,
  loanHas: 30,
  loanCount: 31,
  loanType: 32,
  loanProduct: 33,
  loanPrincipal: 34,
  loanTerm: 36,
  loanClosed: 37,
  loanElapsed: 38,
  loanDay: 39,
  loanOverdue: 40,
  loanOverdueCount: 41,
  loanRate: 42,
  loanOverdueMore: 44,
  paidAt: 43,
  familyHas: 50,
  familyAgent: 51,
  billHas: 52,
  billDay: 53,
  billAmount: 54,
  billStatus: 56,
  billPaidDay: 57,
  billPaidTime: 58,
  billByAgent: 59,
  activeDormant: 60,
  activeRate: 61,
  activeCandidates: 63,
  deviceModel: 64,
  appVersion: 65,
  activeShare: 66,
} as const

/** The customer's own hash: every draw about them starts from it. */
export const CUSTOMER_HASH = `cityHash64({seed:UInt64}, {bank:UInt8}, customer_key)`

/** Age in completed years on the bank's local date; 45 when the birth date is unknown. */
export const AGE = `toUInt8(if(isNull(birth_date), 45, floor(dateDiff('day', assumeNotNull(birth_date), {today:Date32}) / 365.2425)))`

/**
 * Behaviour segment: 0 elder (60+), 1 farmer or migrant worker, 2 young or student, 3 other
 * working age. Intent mixes, activity and session shapes are tabled per segment.
 */
export const SEGMENT = `toUInt8(multiIf(${AGE} >= 60, 0, occupation IN ('farmer', 'migrant_worker'), 1, ${AGE} < 30 OR occupation = 'student', 2, 3))`

/** One app installation for most customers, two (a new phone, a tablet) for a fifth of them. */
export const DEVICE_COUNT = `toUInt8(1 + (${sqlU(CUSTOMER_HASH, SALT.devices)} < 0.2))`

/** The app-generated anonymous id of a customer's device number `device` (1 or 2). */
export function anonymousId(device: string): string {
  const h = `cityHash64({seed:UInt64}, {bank:UInt8}, ${SALT.anonymousId}, customer_key, ${device})`
  return sqlUuid(h, `cityHash64(${h})`)
}
