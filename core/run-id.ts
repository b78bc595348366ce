let lastId = 0n

/**
 * Run ids grow with time (they order versions in ReplacingMergeTree tables) and never repeat in a
 * process. Shared by every pipeline's runs and builds (tags, segments, the layout model, push
 * targeting), so it lives beside the other plumbing rather than in one of them.
 */
export function newRunId(now = Date.now()): string {
  let id = BigInt(now) * 1000n + BigInt(Math.floor(Math.random() * 1000))
  if (id <= lastId) id = lastId + 1n
  lastId = id
  return id.toString()
}
