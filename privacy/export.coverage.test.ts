import { describe, expect, it } from 'vitest'
import type { TenantTable } from '../core/db.js'
import { PLACES } from './erasure.places.js'
import { NOT_EXPORTED, SECTIONS } from './export.service.js'

/**
 * A customer's copy of their data cannot fall behind what is held about them: every table that
 * holds a customer's rows (the erasure's places, which cannot fall behind the schema) is read by
 * a section of the export, or is listed with why it is not; and nothing is both.
 */

/** The tables a query reads (FROM or JOIN), by name. */
const tablesOf = (sql: string) => new Set([...sql.matchAll(/\b(?:FROM|JOIN)\s+([a-z_]+)\b/g)].map((m) => m[1]!))

// The events section is read in pages by the service itself (its cursor), from `events`.
const exported = new Set<string>(['events', ...Object.values(SECTIONS).flatMap((sql) => [...tablesOf(sql)])])
const holding = (Object.entries(PLACES) as [TenantTable, (typeof PLACES)[TenantTable]][]).filter(([, p]) => p.by !== 'none' && p.by !== 'kept').map(([t]) => t)

describe('the export covers every place that holds a customer', () => {
  it.each(holding)('%s: read by a section, or listed with why not', (table) => {
    const read = exported.has(table)
    const why = NOT_EXPORTED[table]
    expect(read || why !== undefined, `${table} holds a customer's rows; no export section reads it and NOT_EXPORTED does not say why`).toBe(true)
    expect(read && why !== undefined, `${table} is read by a section and also listed as not exported`).toBe(false)
  })

  it('lists as not exported only tables that hold a customer', () => {
    expect(Object.keys(NOT_EXPORTED).filter((t) => !holding.includes(t as TenantTable))).toEqual([])
  })
})
