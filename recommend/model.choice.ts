import { z } from 'zod'
import type { TenantDb } from '../core/db.js'
import { topK } from './eval/matrix.js'
import { rankingMetrics, type RankingCase } from './eval/metrics.js'
import { DEFAULT_LAMBDA_PER_USER, fitItemModel, modelName, parseModelName, type FitOptions, type ItemGram, type ModelKind, type ModelSpec } from './model.fit.js'
import { modelScratch, scoreByNeighbours, type ModelInput } from './model.score.js'

/**
 * Which model a bank is served, chosen at each build by an offline evaluation on the bank's own
 * engagements split in time: the model is fitted on what happened before `cut` (the build's
 * `asOf` less the test days) and asked, for a sample of customers who engaged on both sides,
 * for the top k items they had not engaged with before; the items they first engaged with after
 * the cut are the truth. Every candidate goes through the code that serves (fitItemModel, then
 * scoreByNeighbours over the customer's strongest affinities), and the best nDCG@k wins, ties to
 * the earlier candidate. Too few such customers say nothing: the default (EASE, the best on
 * the public benchmark) is served and the record says why.
 */

export const CANDIDATES: readonly ModelSpec[] = [
  { kind: 'ease', lambdaPerUser: DEFAULT_LAMBDA_PER_USER },
  { kind: 'ease', lambdaPerUser: 0.1 },
  { kind: 'ease', lambdaPerUser: 1 },
  { kind: 'ease', lambdaPerUser: 3 },
  { kind: 'sar' },
]
export const DEFAULT_MODEL: ModelSpec = CANDIDATES[0]!
/** Fewer test customers than this and a difference of nDCG is noise. */
export const MIN_TEST_CUSTOMERS = 30

/** One test customer: their strongest items before the cut (indices into the gram), all of them, and what came after. */
export interface ChoiceCase {
  items: Int32Array
  affinity: Float32Array
  seen: Int32Array
  /** Items first engaged with after the cut; an index >= the gram's n is an item the train side never saw. */
  relevant: Int32Array
}

export interface ModelChoice {
  model: string
  chosenBy: 'evaluation' | 'too_few_test_customers'
  k: number
  testCustomers: number
  /** nDCG@k per candidate, and of the most-popular baseline. */
  ndcg: Record<string, number>
}

/** nDCG@k of each candidate and of popularity on the cases, through the serving code. */
export function evaluateCandidates(gram: ItemGram, cases: readonly ChoiceCase[], o: FitOptions & { k?: number; candidates?: readonly ModelSpec[] } = {}): Record<string, number> {
  const k = o.k ?? 10
  const out: Record<string, number> = {}
  const scratch = modelScratch(gram.n)
  const lists = (score: (c: ChoiceCase, into: Float64Array) => void): RankingCase[] =>
    cases.map((c) => {
      score(c, scratch.co)
      for (const i of c.seen) scratch.co[i] = -Infinity
      return { relevant: c.relevant, recommended: topK(scratch.co, k) }
    })
  for (const spec of o.candidates ?? CANDIDATES) {
    const model = fitItemModel(gram, spec, o)
    out[model.name] = rankingMetrics(lists((c) => scoreByNeighbours(model.neighbours, c.items, c.affinity, 0, c.items.length, model.input, scratch)), k).ndcg
  }
  const users = Float64Array.from({ length: gram.n }, (_, i) => gram.co[i * gram.n + i]!)
  out.popularity = rankingMetrics(lists((_, into) => into.set(users)), k).ndcg
  return out
}

/** The best candidate by nDCG (ties to the earlier one), or the default on too few customers. */
export function chooseModel(ndcg: Record<string, number>, testCustomers: number, k = 10, candidates: readonly ModelSpec[] = CANDIDATES): ModelChoice {
  if (testCustomers < MIN_TEST_CUSTOMERS) return { model: modelName(DEFAULT_MODEL), chosenBy: 'too_few_test_customers', k, testCustomers, ndcg }
  let best = modelName(candidates[0]!)
  for (const s of candidates) if ((ndcg[modelName(s)] ?? -1) > (ndcg[best] ?? -1)) best = modelName(s)
  return { model: best, chosenBy: 'evaluation', k, testCustomers, ndcg }
}

const gramRow = z.object({ item: z.string(), others: z.array(z.string()), co: z.array(z.coerce.number()), users: z.coerce.number() })

/**
 * G over `items` (their order) from the customers who engaged before `until`: the item bitmaps
 * of `events` (model.build.ts's engagement rows) ANDed pairwise inside ClickHouse.
 */
export async function itemGram(db: TenantDb, events: string, params: Record<string, unknown>, items: readonly string[]): Promise<ItemGram> {
  const rows = await db.query(
    `WITH ib AS (SELECT item, groupBitmapState(toUInt32(customer_key)) AS bm FROM ${events} WHERE customer_key != 0 AND item IN {items:Array(String)} GROUP BY item)
     SELECT x.item AS item, groupArray(y.item) AS others, groupArray(pair) AS co, (SELECT groupBitmapOr(bm) FROM ib) AS users
     FROM ib AS x CROSS JOIN ib AS y ARRAY JOIN [bitmapAndCardinality(x.bm, y.bm)] AS pair
     WHERE pair > 0 GROUP BY x.item`,
    { ...params, items },
    gramRow,
  )
  return gramFromRows(items, rows)
}

/** The dense G of `items` from per-item rows of (other item, count); items outside the list are ignored. */
export function gramFromRows(items: readonly string[], rows: readonly { item: string; others: string[]; co: number[]; users?: number }[]): ItemGram {
  const n = items.length
  const at = new Map(items.map((id, i) => [id, i]))
  const co = new Float64Array(n * n)
  for (const r of rows) {
    const i = at.get(r.item)
    if (i === undefined) continue
    r.others.forEach((o, t) => {
      const j = at.get(o)
      if (j !== undefined) co[i * n + j] = r.co[t]!
    })
  }
  return { n, co, users: rows[0]?.users ?? 0 }
}

const caseRow = z.object({ items: z.array(z.string()), affinity: z.array(z.number()), seen: z.array(z.string()), fresh: z.array(z.string()) })

/**
 * Up to `sample` customers (a fixed draw: by a hash of the key) who engaged with catalogue items
 * before the cut and with a new one after it, each with their affinities decayed to the cut
 * (the build's own, as if it had run then) and the items first engaged with after it.
 */
export async function choiceCases(db: TenantDb, events: string, params: Record<string, unknown>, items: readonly string[], sample: number): Promise<ChoiceCase[]> {
  const before = `groupArrayIf((a, item), first < {cut:DateTime64(3)})`
  const rows = await db.query(
    `SELECT arrayMap(t -> t.2, arraySlice(arrayReverseSort(t -> t.1, ${before}), 1, {perCustomer:UInt16})) AS items,
            arrayMap(t -> toFloat32(t.1), arraySlice(arrayReverseSort(t -> t.1, ${before}), 1, {perCustomer:UInt16})) AS affinity,
            groupArrayIf(item, first < {cut:DateTime64(3)}) AS seen, groupArrayIf(item, first >= {cut:DateTime64(3)}) AS fresh
     FROM (
       SELECT customer_key, item, min(timestamp) AS first,
              sumIf(w * exp2(-dateDiff('second', timestamp, {cut:DateTime64(3)}) / {halfLife:Float64}), timestamp < {cut:DateTime64(3)}) AS a
       FROM ${events} WHERE customer_key != 0 AND item IN {items:Array(String)} GROUP BY customer_key, item)
     GROUP BY customer_key HAVING length(seen) > 0 AND length(fresh) > 0
     ORDER BY cityHash64(customer_key) LIMIT {sample:UInt32}`,
    { ...params, items, sample },
    caseRow,
  )
  const at = new Map(items.map((id, i) => [id, i]))
  // An item after the cut that the train side never saw gets an index no list can hold.
  let unseen = items.length
  const ids = (xs: string[]) => Int32Array.from(xs.map((x) => at.get(x) ?? -1).filter((x) => x >= 0))
  return rows.map((r) => {
    const kept = r.items.map((x, t) => [at.get(x), r.affinity[t]!] as const).filter((p): p is readonly [number, number] => p[0] !== undefined)
    return {
      items: Int32Array.from(kept.map((p) => p[0])),
      affinity: Float32Array.from(kept.map((p) => p[1])),
      seen: ids(r.seen),
      relevant: Int32Array.from(r.fresh.map((x) => at.get(x) ?? unseen++)),
    }
  })
}

/** The model a build serves, as its record says. */
export interface ServingModel {
  name: string
  kind: ModelKind
  input: ModelInput
}

/** Builds from before the model was chosen recorded none: their neighbours are SAR's. */
const SAR_MODEL: ServingModel = Object.freeze({ name: 'sar', kind: 'sar', input: 'affinity' })

const modelStats = z.object({ model: z.object({ name: z.string(), input: z.enum(['affinity', 'binary']) }).optional() })

export async function loadServedModel(db: TenantDb, build: string | null): Promise<ServingModel> {
  if (!build) return SAR_MODEL
  const [row] = await db.query(`SELECT stats FROM rec_models FINAL WHERE tenant_id = {tenant:UInt16} AND build = {build:UInt64} LIMIT 1`, { build }, z.object({ stats: z.string() }))
  const parsed = modelStats.safeParse(JSON.parse(row?.stats || '{}'))
  const m = parsed.success ? parsed.data.model : undefined
  const spec = m && parseModelName(m.name)
  return m && spec ? { name: m.name, kind: spec.kind, input: m.input } : SAR_MODEL
}
