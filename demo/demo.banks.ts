/**
 * The fictional demo group: a provincial rural credit union and three county rural commercial
 * banks. Every name and code is invented. Region codes use the prefix 99, which no real
 * province has, so demo data can never be mistaken for a real county.
 */

export interface DemoRegion {
  code: string
  name: string
  /** Serving branches (网点) of the bank in this county. */
  branches: number
  /** Relative share of the bank's customers. */
  weight: number
}

export interface DemoBank {
  /** Position in the group; random draws hash this rather than the tenant id the registry assigns. */
  index: number
  slug: string
  name: string
  nameEn: string
  /** Lower-case short code used in product ids. */
  code: string
  /** Digits that start every customer number. */
  customerPrefix: string
  /** Digits used inside account numbers. */
  bin: string
  /** Share of the demo's customers: deliberately uneven. */
  share: number
  regions: readonly DemoRegion[]
  /** Base rate of marketing consent: banks differ in how they asked. */
  marketingConsent: number
  /** Local specialities sold in the agricultural supply-and-marketing zone. */
  specialities: readonly { zh: string; en: string; price: number }[]
}

export const DEMO_GROUP = {
  slug: 'demo-group',
  name: '青禾省农村信用社联合社（演示）',
  nameEn: 'Qinghe Provincial Rural Credit Union (demo)',
} as const

export const DEMO_BANKS: readonly DemoBank[] = [
  {
    index: 0,
    slug: 'demo-qingshan',
    name: '青山农村商业银行（演示）',
    nameEn: 'Qingshan Rural Commercial Bank (demo)',
    code: 'qs',
    customerPrefix: '8101',
    bin: '623101',
    share: 0.5,
    regions: [
      { code: '990121', name: '青山县', branches: 4, weight: 5 },
      { code: '990122', name: '云溪县', branches: 3, weight: 3 },
      { code: '990123', name: '石门县', branches: 2, weight: 2 },
    ],
    marketingConsent: 0.62,
    specialities: [
      { zh: '青山云雾茶', en: 'Qingshan cloud-mist tea', price: 168 },
      { zh: '高山香菇', en: 'Highland shiitake', price: 58 },
      { zh: '土蜂蜜', en: 'Farm honey', price: 88 },
    ],
  },
  {
    index: 1,
    slug: 'demo-lvshui',
    name: '绿水农村商业银行（演示）',
    nameEn: 'Lvshui Rural Commercial Bank (demo)',
    code: 'ls',
    customerPrefix: '8102',
    bin: '623102',
    share: 0.3,
    regions: [
      { code: '990221', name: '绿水县', branches: 3, weight: 4 },
      { code: '990222', name: '荷塘县', branches: 2, weight: 3 },
    ],
    marketingConsent: 0.57,
    specialities: [
      { zh: '荷塘莲藕', en: 'Lotus root', price: 36 },
      { zh: '生态鱼', en: 'Pond-raised fish', price: 45 },
      { zh: '鸭蛋礼盒', en: 'Salted duck eggs', price: 52 },
    ],
  },
  {
    index: 2,
    slug: 'demo-jintian',
    name: '金田农村商业银行（演示）',
    nameEn: 'Jintian Rural Commercial Bank (demo)',
    code: 'jt',
    customerPrefix: '8103',
    bin: '623103',
    share: 0.2,
    regions: [
      { code: '990321', name: '金田县', branches: 3, weight: 4 },
      { code: '990322', name: '稻香县', branches: 2, weight: 2 },
      { code: '990323', name: '橙乡县', branches: 2, weight: 2 },
      { code: '990324', name: '北坡县', branches: 1, weight: 1 },
    ],
    marketingConsent: 0.6,
    specialities: [
      { zh: '金田香米', en: 'Jintian fragrant rice', price: 79 },
      { zh: '压榨菜籽油', en: 'Pressed rapeseed oil', price: 98 },
      { zh: '橙乡脐橙', en: 'Navel oranges', price: 66 },
    ],
  },
]

/** Customers per bank: uneven shares, every bank at least one customer, summing to `total`. */
export function splitCustomers(total: number): number[] {
  const counts = DEMO_BANKS.map((b) => Math.max(1, Math.floor(total * b.share)))
  counts[0]! += total - counts.reduce((a, b) => a + b, 0)
  return counts
}

/** A branch code such as QS-0121-02: bank, county, branch number. */
export function branchCode(bank: DemoBank, region: DemoRegion, n: number): string {
  return `${bank.code.toUpperCase()}-${region.code.slice(2)}-${String(n).padStart(2, '0')}`
}
