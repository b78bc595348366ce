/**
 * Ranking metrics as Microsoft Recommenders' `python_evaluation` defines them, for top-k
 * recommendation with binary relevance. For one user with relevant (test) items T, |T| > 0, and a
 * ranked list R truncated to its first k entries, let hit(i) = 1 when R[i] is in T (positions
 * i = 1..k, counting each relevant item once), H = Σ hit(i), and H(i) = Σ_{j<=i} hit(j):
 *
 *   precision@k = H / k               (k, not |R|: a list shorter than k cannot reach 1)
 *   recall@k    = H / |T|
 *   nDCG@k      = DCG / IDCG, DCG = Σ hit(i) / ln(1 + i), IDCG = Σ_{i=1}^{min(k,|T|)} 1 / ln(1 + i)
 *   AP (map)    = Σ hit(i) · H(i) / i  ÷ |T|             (the library's `map`)
 *   AP@k        = Σ hit(i) · H(i) / i  ÷ min(k, |T|)     (the library's `map_at_k`)
 *
 * Each metric is the mean over users. Which users: every case handed in that has at least one
 * relevant item, whether or not its list is empty (an empty list scores 0). The library averages
 * over users present in both truth and predictions; the evaluator hands in exactly the test users
 * the models can score (those with training history), which is the same set when every such user
 * gets a list. The published MovieLens figures (MAP ≈ 0.11 for SAR) are the `map` variant; older
 * releases called it `map_at_k`.
 */

export interface RankingCase {
  /** The user's relevant items (test set); duplicates count once. */
  relevant: ArrayLike<number>
  /** The user's recommendations, best first; only the first k are read. */
  recommended: ArrayLike<number>
}

export interface UserRankingScores {
  precision: number
  recall: number
  ndcg: number
  /** Average precision normalised by |T| (`map`). */
  ap: number
  /** Average precision normalised by min(k, |T|) (`map_at_k`). */
  apAtK: number
}

export interface RankingMetrics {
  precision: number
  recall: number
  ndcg: number
  map: number
  mapAtK: number
  /** Users averaged over: cases with at least one relevant item. */
  users: number
}

/** Scores of one user; undefined when the user has no relevant item and so does not count. */
export function scoreUser(c: RankingCase, k: number): UserRankingScores | undefined {
  if (!(Number.isInteger(k) && k > 0)) throw new RangeError(`k must be a positive integer, got ${k}`)
  const pending = new Set<number>()
  for (let i = 0; i < c.relevant.length; i++) pending.add(c.relevant[i]!)
  const nRelevant = pending.size
  if (nRelevant === 0) return undefined

  const depth = Math.min(k, c.recommended.length)
  let hits = 0
  let dcg = 0
  let precisionSum = 0
  for (let i = 0; i < depth; i++) {
    // Deleting on a hit counts each relevant item once even if a list repeats it.
    if (!pending.delete(c.recommended[i]!)) continue
    hits++
    const rank = i + 1
    dcg += 1 / Math.log(1 + rank)
    precisionSum += hits / rank
  }
  let idcg = 0
  const ideal = Math.min(k, nRelevant)
  for (let rank = 1; rank <= ideal; rank++) idcg += 1 / Math.log(1 + rank)

  return {
    precision: hits / k,
    recall: hits / nRelevant,
    ndcg: dcg / idcg,
    ap: precisionSum / nRelevant,
    apAtK: precisionSum / ideal,
  }
}

/** Means over users; all zero (with `users: 0`) when no case has a relevant item. */
export function rankingMetrics(cases: Iterable<RankingCase>, k: number): RankingMetrics {
  let users = 0
  const sum = { precision: 0, recall: 0, ndcg: 0, ap: 0, apAtK: 0 }
  for (const c of cases) {
    const s = scoreUser(c, k)
    if (!s) continue
    users++
    sum.precision += s.precision
    sum.recall += s.recall
    sum.ndcg += s.ndcg
    sum.ap += s.ap
    sum.apAtK += s.apAtK
  }
  const mean = (x: number) => (users === 0 ? 0 : x / users)
  return {
    precision: mean(sum.precision),
    recall: mean(sum.recall),
    ndcg: mean(sum.ndcg),
    map: mean(sum.ap),
    mapAtK: mean(sum.apAtK),
    users,
  }
}

export const precisionAtK = (cases: Iterable<RankingCase>, k: number): number => rankingMetrics(cases, k).precision
export const recallAtK = (cases: Iterable<RankingCase>, k: number): number => rankingMetrics(cases, k).recall
export const ndcgAtK = (cases: Iterable<RankingCase>, k: number): number => rankingMetrics(cases, k).ndcg
export const meanAveragePrecision = (cases: Iterable<RankingCase>, k: number): number => rankingMetrics(cases, k).map
export const mapAtK = (cases: Iterable<RankingCase>, k: number): number => rankingMetrics(cases, k).mapAtK

/**
 * Catalogue coverage as the library's `catalog_coverage`: distinct items recommended to anyone,
 * divided by the number of distinct items in the training data (`catalogueSize`). A popularity
 * baseline sits near k / catalogueSize; a personalised model should reach much further.
 */
export function catalogueCoverage(recommended: Iterable<ArrayLike<number>>, catalogueSize: number): number {
  if (catalogueSize <= 0) return 0
  const seen = new Set<number>()
  for (const list of recommended) for (let i = 0; i < list.length; i++) seen.add(list[i]!)
  return seen.size / catalogueSize
}
