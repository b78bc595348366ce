import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { explain } from './segment.compile.js'
import { members, setupFixture, UNIVERSE, type Fixture } from './segment.fixture.js'
import { parseSegment } from './segment.schema.js'

/**
 * Profile attributes in segments, by hand: customers 1-10 get regions (odd r1, even r2) and some
 * birth dates; the fixture's local date is 2026-03-15.
 */

let fx: Fixture

beforeAll(async () => {
  fx = await setupFixture()
  const birth = (k: number) => (k <= 3 ? '1950-03-15' : k === 4 ? '1966-03-16' : k === 5 ? '1966-03-15' : null)
  await fx.engine.db.forTenant(fx.tenant).insert(
    'customers',
    Array.from({ length: 10 }, (_, i) => i + 1).map((k) => ({
      customer_key: k, customer_no: `C${k}`, gender: k % 2 ? 'female' : 'male', birth_date: birth(k), region_code: k % 2 ? 'r1' : 'r2',
      opened_at: '2020-01-01 00:00:00.000', updated_at: '2026-01-01 00:00:00.000',
    })),
  )
}, 60_000)

afterAll(async () => {
  await fx?.engine.close()
})

describe('profile attributes', () => {
  it('compares text attributes', async () => {
    expect(await members(fx, { attribute: 'region_code', op: 'eq', value: 'r1' })).toEqual([1, 3, 5, 7, 9])
    expect(await members(fx, { attribute: 'gender', op: 'in', value: ['male'] })).toEqual([2, 4, 6, 8, 10])
    // Everyone else, including the customers without a region.
    expect(await members(fx, { attribute: 'region_code', op: 'not_in', value: ['r1'] })).toEqual(UNIVERSE.filter((k) => ![1, 3, 5, 7, 9].includes(k)))
  })

  it('computes age for the local date: 60 on the birthday, not the day before', async () => {
    // 1-3 born 1950-03-15 (76 today), 5 born 1966-03-15 (60 today), 4 born 1966-03-16 (59).
    expect(await members(fx, { attribute: 'age', op: 'gte', value: 60 })).toEqual([1, 2, 3, 5])
    expect(await members(fx, { attribute: 'age', op: 'between', value: [59, 60] })).toEqual([4, 5])
    // Without a birth date the age is unknown: only ne holds.
    expect((await members(fx, { attribute: 'age', op: 'ne', value: 76 })).length).toBe(UNIVERSE.length - 3)
  })

  it('mixes with tags and events in one tree', async () => {
    // Even region (r2) and the flag tag (key % 3 = 0), among 1..10: 6.
    expect(await members(fx, { all: [{ attribute: 'region_code', op: 'eq', value: 'r2' }, { tag: 'flag', op: 'eq', value: true }] })).toEqual([6])
    const plan = explain(parseSegment({ purpose: 'marketing', rule: { not: { attribute: 'age', op: 'lt', value: 60 } } }), fx.opts)
    expect(plan.root.children?.[0]).toMatchObject({ node: 'attribute', strategy: 'bitmap' })
  })

  it('refuses ranges on text and values of the wrong type, at the node', async () => {
    const fail = async (rule: unknown) => {
      try {
        await members(fx, rule)
      } catch (e) {
        return (e as { issues: { field: string }[] }).issues[0]!.field
      }
      return 'accepted'
    }
    expect(await fail({ all: [{ attribute: 'gender', op: 'gt', value: 'a' }] })).toBe('rule.all.0.op')
    expect(await fail({ attribute: 'age', op: 'eq', value: 'old' })).toBe('rule.value')
    expect(await fail({ attribute: 'birth_date', op: 'eq', value: '1950-01-01' })).toBe('rule.attribute')
  })
})
