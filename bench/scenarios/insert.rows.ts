import { EVENT_COLUMNS as STORED_COLUMNS } from '../../ingest/event-row.js'

/**
 * Realistic `events` rows for the insert benchmark, and the text serializers the client paths use.
 *
 * The rows look like what the Segment-style ingest endpoint will hand to the store: a bank app's
 * track/screen/page/identify calls, JSON `properties` of ~100-250 bytes (some with `product_id`
 * and `amount`, which the table promotes to columns engine-side), a ~100-byte JSON `context`,
 * uuid-like ids, and timestamps already normalized to `YYYY-MM-DD hh:mm:ss.sss` UTC (a format
 * every ClickHouse text parser accepts without `date_time_input_format = best_effort`, so the
 * same rows insert into the embedded engine and a server alike). Some properties carry Chinese
 * text (multi-byte UTF-8) and escaped quotes, so the CSV/TSV escapers are exercised for real and
 * the fingerprint check after each insert proves they round-trip.
 *
 * Everything here is deterministic for a given seed, so two runs insert the same bytes.
 */

export const EVENT_TYPES = ['track', 'identify', 'page', 'screen'] as const
export type EventType = (typeof EVENT_TYPES)[number]

/** One row of `events`, in the shape the JSONEachRow path sends (no MATERIALIZED columns). */
export interface EventRow {
  tenant_id: number
  customer_key: number
  timestamp: string
  type: EventType
  event: string
  message_id: string
  anonymous_id: string
  user_id: string
  session_id: string
  properties: string
  context: string
  sent_at: string
  received_at: string
}

/**
 * The inserted columns in table order: the writer's (ingest/event-row.ts) but `violations`, which
 * these rows leave to the column's default. Positional formats (compact JSON, CSV, TSV) follow it.
 */
export const EVENT_COLUMNS = STORED_COLUMNS.filter((c): c is Exclude<typeof c, 'violations'> => c !== 'violations') satisfies readonly (keyof EventRow)[]

/** The same row as a positional array, for JSONCompactEachRow. */
export type EventTuple = [
  number,
  number,
  string,
  EventType,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
]

export function toTuple(r: EventRow): EventTuple {
  return [
    r.tenant_id,
    r.customer_key,
    r.timestamp,
    r.type,
    r.event,
    r.message_id,
    r.anonymous_id,
    r.user_id,
    r.session_id,
    r.properties,
    r.context,
    r.sent_at,
    r.received_at,
  ]
}

/**
 * Aggregates over a row set that the engine can recompute after an insert. Equal aggregates mean
 * every row arrived, keys and timestamps parsed to the same values, and the JSON survived the
 * format's escaping byte for byte.
 */
export interface Fingerprint {
  rows: number
  customerKeySum: number
  /** UTF-8 bytes of all `properties` values (ClickHouse `length()` counts bytes). */
  propertiesBytes: number
  /** Sum of `timestamp` in epoch milliseconds; a bigint because it passes 2^53. */
  timestampMsSum: bigint
  /** Rows whose properties carry a non-empty `product_id` (checks the MATERIALIZED column). */
  withProduct: number
}

/** Shape parameters shared by the JS generator and the engine-side generator. */
export const SHAPE = {
  tenants: 3,
  customers: 100_000,
  /** Share of events sent before the user signs in (customer_key 0, empty user_id). */
  anonymousShare: 0.12,
  anonymousVisitors: 20_000,
  /** 2025-03-01T00:00:00Z: one month partition, so a batch writes one part. */
  startMs: Date.UTC(2025, 2, 1),
  spanMs: 28 * 24 * 3600 * 1000,
  sessionMs: 30 * 60 * 1000,
} as const

/** Small, fast, seedable PRNG (mulberry32); quality is ample for synthetic data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const hex8 = (rnd: () => number) => Math.floor(rnd() * 4294967296).toString(16).padStart(8, '0')

/** A version-4-shaped uuid string drawn from `rnd`. */
function uuidFrom(rnd: () => number): string {
  const a = hex8(rnd)
  const b = hex8(rnd)
  const c = hex8(rnd)
  const d = hex8(rnd)
  const variant = (8 + (Math.floor(rnd() * 4) & 3)).toString(16)
  return `${a}-${b.slice(0, 4)}-4${b.slice(5, 8)}-${variant}${c.slice(1, 4)}-${c.slice(4)}${d}`
}

/** `2025-03-01 12:34:56.789`: DateTime64(3) text that needs no best-effort parsing. */
export function chTime(ms: number): string {
  const iso = new Date(ms).toISOString()
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`
}

export const PRODUCT_NAMES = ['稳健理财 90天', '大额存单 3年期', '白金信用卡', '闪电消费贷', '黄金积存', '货币基金 A', '养老理财', '车险 年度']
export const CATEGORIES = ['wealth', 'deposit', 'card', 'loan', 'gold', 'fund', 'pension', 'insurance']
export const SCREENS = ['Home', 'Wealth', 'Loans', 'Cards', 'Transfer', 'Me']
export const SEARCHES = ['理财', '大额存单', '信用卡 "白金"', 'loan rate', '基金 "稳健型"', 'gold']
export const BANKS = ['ICBC', 'CCB', 'ABC', 'BOC', 'CMB']
export const LOGIN_METHODS = ['face_id', 'password', 'sms_code', 'fingerprint']

/** Device/app profiles: a customer keeps one, so `context` repeats per customer as in real traffic. */
export const CONTEXTS = [
  { app: { version: '8.3.1', build: '803010' }, device: { model: 'iPhone15,2' }, os: { name: 'iOS', version: '17.4' }, locale: 'zh-CN' },
  { app: { version: '8.3.1', build: '803010' }, device: { model: 'iPhone13,4' }, os: { name: 'iOS', version: '16.7' }, locale: 'zh-CN' },
  { app: { version: '8.2.9', build: '802090' }, device: { model: 'HUAWEI NOH-AN00' }, os: { name: 'HarmonyOS', version: '4.0' }, locale: 'zh-CN' },
  { app: { version: '8.3.0', build: '803000' }, device: { model: 'Xiaomi 2304FPN6DC' }, os: { name: 'Android', version: '14' }, locale: 'zh-CN' },
  { app: { version: '8.3.1', build: '803010' }, device: { model: 'OPPO PHB110' }, os: { name: 'Android', version: '13' }, locale: 'zh-CN' },
  { app: { version: '8.1.4', build: '801040' }, device: { model: 'vivo V2309A' }, os: { name: 'Android', version: '14' }, locale: 'en-US' },
].map((c) => JSON.stringify(c))

export interface Product {
  id: string
  name: string
  category: string
  price: number
}

export const PRODUCTS: Product[] = Array.from({ length: 500 }, (_, i) => ({
  id: `WM2025-${String(i + 1).padStart(4, '0')}`,
  name: `${PRODUCT_NAMES[i % PRODUCT_NAMES.length]!} ${(i % 9) + 1}号`,
  category: CATEGORIES[i % CATEGORIES.length]!,
  price: 1000 * ((i % 50) + 1),
}))

const pick = <T>(xs: readonly T[], rnd: () => number): T => xs[Math.floor(rnd() * xs.length)]!
const money = (rnd: () => number, max: number) => Math.round(rnd() * max * 100) / 100

/** Properties of a track call, by event name; `product` says whether product_id is present. */
function trackEvent(rnd: () => number): { event: string; properties: Record<string, unknown>; product: boolean } {
  const r = rnd()
  const p = pick(PRODUCTS, rnd)
  if (r < 0.35) {
    return {
      event: r < 0.25 ? 'Product Viewed' : 'Product Clicked',
      product: true,
      properties: {
        product_id: p.id,
        product_name: p.name,
        category: p.category,
        price: p.price,
        currency: 'CNY',
        position: Math.floor(rnd() * 20),
        list_id: 'home_recommend',
        source: pick(['recommend', 'search', 'banner'], rnd),
        experiment: 'rec_v2',
      },
    }
  }
  if (r < 0.42) {
    return {
      event: 'Order Completed',
      product: true,
      properties: {
        order_id: `O${Math.floor(rnd() * 1e12)}`,
        product_id: p.id,
        product_name: p.name,
        category: p.category,
        amount: money(rnd, 200_000),
        currency: 'CNY',
        payment_method: pick(['balance', 'card', 'transfer'], rnd),
        term_days: pick([30, 90, 180, 365], rnd),
      },
    }
  }
  if (r < 0.5) {
    return {
      event: 'Loan Calculator Used',
      product: true,
      properties: {
        product_id: p.id,
        amount: money(rnd, 500_000),
        term_months: pick([12, 24, 36, 60], rnd),
        rate: 0.0345,
        monthly_payment: money(rnd, 20_000),
        source: 'loan_page',
      },
    }
  }
  if (r < 0.62) {
    return {
      event: 'Search',
      product: false,
      properties: { query: pick(SEARCHES, rnd), results: Math.floor(rnd() * 40), category: pick(CATEGORIES, rnd), source: 'search_bar', latency_ms: Math.floor(rnd() * 400) },
    }
  }
  if (r < 0.74) {
    return {
      event: 'Transfer Submitted',
      product: false,
      properties: { amount: money(rnd, 50_000), currency: 'CNY', channel: 'mobile', payee_bank: pick(BANKS, rnd), is_new_payee: rnd() < 0.1, transfer_type: 'instant', fee: 0 },
    }
  }
  if (r < 0.9) {
    return {
      event: 'Login',
      product: false,
      properties: { method: pick(LOGIN_METHODS, rnd), success: rnd() < 0.97, duration_ms: Math.floor(rnd() * 3000), remember_device: true },
    }
  }
  return {
    event: 'Push Opened',
    product: false,
    properties: { campaign_id: `cmp_${Math.floor(rnd() * 300)}`, push_id: `push-${hex8(rnd)}`, title: '您的专属理财推荐已更新', deeplink: `app://wealth/detail?id=${p.id}` },
  }
}

/**
 * N rows held as the ingest endpoint receives them: one JSON array body per batch, in Buffers off
 * the V8 heap. A batch is parsed (untimed) just before it is inserted, so the heap holds one
 * batch of parsed rows at a time, as a server's would. Holding all 1M rows as objects instead
 * (~0.8-1.2 GB of heap) made every major GC mark that heap again and again, slowing every
 * variant, the engine-side ones included (2 cores: V8's concurrent marking competes with the
 * engine's threads), by 2-3x in trial runs.
 */
export interface EventBatches {
  rows: number
  batchRows: number
  /** JSON array text of rows [i * batchRows, (i + 1) * batchRows). */
  bodies: Buffer[]
  fingerprint: Fingerprint
}

/** Parses one batch body: flat strings, as JSON.parse of a request body gives them. */
export function parseBatch(body: Buffer): EventRow[] {
  return JSON.parse(body.toString('utf8')) as EventRow[]
}

/**
 * Generates `n` rows in arrival (time) order, as ingest batches would arrive: the engine still
 * has to sort each block by (tenant_id, customer_key, timestamp), which is part of what is measured.
 */
export function generateBatches(n: number, batchRows: number, seed: number): EventBatches {
  const rnd = mulberry32(seed)
  // Per-customer (and per-visitor) stable ids, made lazily: anonymous_id and context repeat.
  const anonIds = new Map<number, string>()
  const anonId = (k: number) => {
    let id = anonIds.get(k)
    if (id === undefined) {
      id = uuidFrom(mulberry32(Math.imul(k + 1, 2654435761) ^ seed))
      anonIds.set(k, id)
    }
    return id
  }
  const fp: Fingerprint = { rows: n, customerKeySum: 0, propertiesBytes: 0, timestampMsSum: 0n, withProduct: 0 }
  const bodies: Buffer[] = []
  let batch: EventRow[] = []

  for (let i = 0; i < n; i++) {
    const anonymous = rnd() < SHAPE.anonymousShare
    const customerKey = anonymous ? 0 : 1 + Math.floor(rnd() * SHAPE.customers)
    // Anonymous visitors get keys past the customers' so their ids do not collide.
    const identityKey = anonymous ? SHAPE.customers + 1 + Math.floor(rnd() * SHAPE.anonymousVisitors) : customerKey
    const tenantId = 1 + (identityKey % SHAPE.tenants)
    const ts = SHAPE.startMs + Math.floor((i * SHAPE.spanMs) / n) + Math.floor(rnd() * 60_000)
    const sentAt = ts + Math.floor(rnd() * 2_000)
    const receivedAt = sentAt + 50 + Math.floor(rnd() * 450)
    const anon = anonId(identityKey)

    const t = rnd()
    let type: EventType
    let event: string
    let properties: Record<string, unknown>
    let product = false
    if (t < 0.8) {
      type = 'track'
      ;({ event, properties, product } = trackEvent(rnd))
    } else if (t < 0.9) {
      type = 'screen'
      event = pick(SCREENS, rnd)
      properties = { name: event, path: `/${event.toLowerCase()}`, referrer: '/home', title: event, tab_index: SCREENS.indexOf(event), load_ms: Math.floor(rnd() * 900) }
    } else if (t < 0.96) {
      type = 'page'
      event = pick(SCREENS, rnd)
      properties = { path: `/h5/${event.toLowerCase()}`, referrer: 'app://home', title: `${event} | 千面银行`, url: `https://m.example-bank.cn/h5/${event.toLowerCase()}` }
    } else {
      type = 'identify'
      event = ''
      properties = { traits_version: 3, segment: pick(['mass', 'mass_affluent', 'private'], rnd), kyc_level: 2, preferred_language: 'zh-CN' }
    }
    const props = JSON.stringify(properties)

    batch.push({
      tenant_id: tenantId,
      customer_key: customerKey,
      timestamp: chTime(ts),
      type,
      event,
      message_id: uuidFrom(rnd),
      anonymous_id: anon,
      user_id: anonymous ? '' : `C${String((customerKey * 7919) % 1e10).padStart(10, '0')}`,
      session_id: `${anon.slice(0, 8)}-${Math.floor(ts / SHAPE.sessionMs).toString(36)}`,
      properties: props,
      context: CONTEXTS[identityKey % CONTEXTS.length]!,
      sent_at: chTime(sentAt),
      received_at: chTime(receivedAt),
    })
    fp.customerKeySum += customerKey
    fp.propertiesBytes += Buffer.byteLength(props)
    fp.timestampMsSum += BigInt(ts)
    if (product) fp.withProduct++
    if (batch.length === batchRows || i === n - 1) {
      bodies.push(Buffer.from(JSON.stringify(batch)))
      batch = []
    }
  }
  return { rows: n, batchRows, bodies, fingerprint: fp }
}

/** The fingerprint of the first `n` rows of a parsed batch (what a warm-up insert must leave). */
export function prefixFingerprint(rows: readonly EventRow[], n: number): Fingerprint {
  const fp: Fingerprint = { rows: n, customerKeySum: 0, propertiesBytes: 0, timestampMsSum: 0n, withProduct: 0 }
  for (let i = 0; i < n; i++) {
    const r = rows[i]!
    fp.customerKeySum += r.customer_key
    fp.propertiesBytes += Buffer.byteLength(r.properties)
    fp.timestampMsSum += BigInt(Date.parse(`${r.timestamp.replace(' ', 'T')}Z`))
    if (r.properties.includes('"product_id":')) fp.withProduct++
  }
  return fp
}

// ---------------------------------------------------------------------------------------------
// Text serializers. These are what an ingest path would run per batch, so they are timed in the
// text-format variants. Measured on this code base's rows (see the insert bench notes):
// - Build text in pieces of ~1000 rows and turn each piece into bytes at once. `s += line` makes
//   a V8 rope; flattening one rope of 100k rows costs 2-3x the flattening of a hundred small ones
//   (cache misses), and the rope's young nodes are copied by every scavenge while it grows.
// - Leave strings alone unless they must change: TSV only rewrites values holding a backslash,
//   tab or line break, so the JSON columns are copied as they are. CSV must double every quote in
//   the JSON columns, two fresh ~150-250-character strings per row, and that garbage makes CSV
//   several times slower to build than TSV (see the bench's serialize_* figures).

const TSV_SPECIAL = /[\\\t\n\r]/
const TSV_SPECIAL_G = /[\\\t\n\r]/g
const TSV_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

/** TabSeparated escaping: backslash, tab and line breaks. JSON with `\"` needs it. */
export function tsvEscape(s: string): string {
  return TSV_SPECIAL.test(s) ? s.replace(TSV_SPECIAL_G, (c) => TSV_ESCAPES[c]!) : s
}

// Quote only what needs it: a delimiter, quote or line break inside, a leading single quote, or
// edge whitespace (which the CSV reader trims from unquoted values). Ids and timestamps pass as
// they are; the JSON columns always need quoting, with every inner quote doubled.
const CSV_NEEDS_QUOTES = /[",\r\n]|^['\s]|\s$/

/** CSV field: as is when safe, else quoted with inner quotes doubled. */
export function csvQuote(s: string): string {
  if (!CSV_NEEDS_QUOTES.test(s)) return s
  return s.includes('"') ? `"${s.replaceAll('"', '""')}"` : `"${s}"`
}

/** Rows [from, to) as TabSeparated text, column order EVENT_COLUMNS. */
export function tsvText(rows: readonly EventRow[], from: number, to: number): string {
  let s = ''
  for (let i = from; i < to; i++) {
    const r = rows[i]!
    s +=
      `${r.tenant_id}\t${r.customer_key}\t${tsvEscape(r.timestamp)}\t${r.type}\t${tsvEscape(r.event)}\t` +
      `${tsvEscape(r.message_id)}\t${tsvEscape(r.anonymous_id)}\t${tsvEscape(r.user_id)}\t${tsvEscape(r.session_id)}\t` +
      `${tsvEscape(r.properties)}\t${tsvEscape(r.context)}\t${tsvEscape(r.sent_at)}\t${tsvEscape(r.received_at)}\n`
  }
  return s
}

/** Rows [from, to) as CSV text, column order EVENT_COLUMNS. */
export function csvText(rows: readonly EventRow[], from: number, to: number): string {
  let s = ''
  for (let i = from; i < to; i++) {
    const r = rows[i]!
    s +=
      `${r.tenant_id},${r.customer_key},${csvQuote(r.timestamp)},${r.type},${csvQuote(r.event)},` +
      `${csvQuote(r.message_id)},${csvQuote(r.anonymous_id)},${csvQuote(r.user_id)},${csvQuote(r.session_id)},` +
      `${csvQuote(r.properties)},${csvQuote(r.context)},${csvQuote(r.sent_at)},${csvQuote(r.received_at)}\n`
  }
  return s
}

/**
 * Rows [from, to) as JSONEachRow text, exactly as @clickhouse/client encodes an array of objects
 * (`values.map((v) => JSON.stringify(v) + '\n').join('')`), so the serialize-only figure isolates
 * the client's own encoding step.
 */
export function ndjsonText(rows: readonly (EventRow | EventTuple)[], from: number, to: number): string {
  return rows
    .slice(from, to)
    .map((r) => JSON.stringify(r) + '\n')
    .join('')
}

export type TextEncoderFn = (rows: readonly EventRow[], from: number, to: number) => string

/**
 * Yields rows [from, to) as text pieces of `piece` rows: the body of a streamed insert (against a
 * server the pieces go out as they are made; the embedded connection joins them into one string).
 */
export function* textPieces(rows: readonly EventRow[], from: number, to: number, piece: number, toText: TextEncoderFn): Generator<string> {
  for (let i = from; i < to; i += piece) yield toText(rows, i, Math.min(i + piece, to))
}

/** Rows [from, to) as one UTF-8 Buffer, encoded piece by piece (for the raw Buffer insert). */
export function textBuffer(rows: readonly EventRow[], from: number, to: number, piece: number, toText: TextEncoderFn): Buffer {
  const parts: Buffer[] = []
  let bytes = 0
  for (const text of textPieces(rows, from, to, piece, toText)) {
    const b = Buffer.from(text)
    parts.push(b)
    bytes += b.length
  }
  return Buffer.concat(parts, bytes)
}
