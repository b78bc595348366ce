import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, type TestApp } from '../test/app.js'
import { FIELD_LABELS, SECTION_LABELS, SECTIONS } from './export.service.js'

/**
 * A person reads the export (README: every section and field named in Chinese and English): each
 * column every section's query gives, as the engine describes it, has its labels.
 */

let t: TestApp
beforeAll(async () => {
  t = await openTestApp({ INGEST_WORKERS: '0' })
})
afterAll(async () => t?.close())

describe('the export’s labels', () => {
  it('name every column of every section, and every section', async () => {
    const tenant = (await t.tenants.create({ slug: 'export-labels', name: 'export labels' })).id
    const unlabelled: string[] = []
    for (const [section, sql] of Object.entries(SECTIONS)) {
      if (!SECTION_LABELS[section]) unlabelled.push(section)
      // The tenant query layer takes no DESCRIBE: the system handle, with the tenant bound by hand.
      const cols = await t.engine.db.system.query(`DESCRIBE (${sql})`, { tenant, ks: [1], limit: 1 }, z.object({ name: z.string() }).loose())
      expect(cols.length, section).toBeGreaterThan(0)
      for (const c of cols) if (!FIELD_LABELS[c.name]) unlabelled.push(`${section}.${c.name}`)
    }
    expect(unlabelled).toEqual([])
  })
})
