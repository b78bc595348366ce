import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { newRunId } from '../core/run-id.js'
import { DAY_MS } from '../core/time.js'
import type { TestEngine } from '../test/engine.js'
import { TAG_TEST_AS_OF, TAG_TEST_TZ } from '../test/fixtures.js'
import { openLoginBank } from './tag.fixture.js'
import { runTags } from './tag.pipeline.js'
import type { TagRepository } from './tag.repository.js'

/**
 * An incremental run after days without one (a failed or skipped schedule) recomputes the
 * customers whose activity left a window on any of the days since the last run. It used to look
 * only at the last of those days: a run five days after the last one left the logins of 03-12 in
 * customers' 7-day counts, though 03-12 had left the window. Logins: customers 1-20 on 03-12,
 * customers 1-3 again on 03-13 (tag.fixture.ts).
 */

const KEYS = Array.from({ length: 20 }, (_, i) => i + 1)
let engine: TestEngine
let repo: TagRepository
let T: number

async function run(days: number, o: { mode?: 'full' | 'incremental'; recompute?: boolean } = {}) {
  const asOf = new Date(TAG_TEST_AS_OF.getTime() + days * DAY_MS)
  return runTags({ db: engine.db }, { tenantId: T, timeZone: TAG_TEST_TZ, defs: await repo.list(T), mode: o.mode ?? 'incremental', asOf, runId: newRunId(), watermarkSlackMs: 0, ...(o.recompute ? { recompute: true } : {}) })
}
async function logins(): Promise<Record<number, number>> {
  const rows = await engine.db.forTenant(T).query(
    `SELECT customer_key AS k, num FROM tag_values FINAL WHERE tenant_id = {tenant:UInt16} AND tag = 'logins_7d' AND is_deleted = 0 AND num > 0 ORDER BY k`,
    {},
    z.object({ k: z.coerce.number(), num: z.coerce.number() }),
  )
  return Object.fromEntries(rows.map((r) => [r.k, r.num]))
}

beforeAll(async () => {
  ;({ engine, repo, tenantId: T } = await openLoginBank({ slug: 'bank-gap', timeZone: TAG_TEST_TZ, keys: KEYS }))
}, 60_000)
afterAll(async () => engine?.close())

describe('an incremental run after days without one', () => {
  it('drops what left the window on every day since the last run, as a recompute does', async () => {
    await run(0, { mode: 'full' })
    expect(Object.keys(await logins())).toHaveLength(20)
    // 03-20: the window is 03-14..03-20; 03-12 and 03-13 left it on different days of the gap.
    const inc = await run(5)
    expect(inc.mode).toBe('incremental')
    expect(await logins()).toEqual({})
    const full = await run(5, { mode: 'full', recompute: true })
    expect(full.changed).toBe(0)
  })
})
