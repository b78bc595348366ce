import { z } from 'zod'
import { conditionError } from '../tags/tag.compile.js'
import { ageSql } from '../tags/tag.features.js'
import { inNumberRange, NUMBER_RANGE_MESSAGE } from '../tags/tag.limits.js'
import type { ParamBinder } from '../core/params.js'

/**
 * Profile attributes a segment may test directly (without a tag): an allow-list of customer
 * columns, read from `customers FINAL`. Age is computed for the segment's local date, never the
 * birth date itself. A customer without the value (no birth date) satisfies `ne` and `not_in`
 * only, as with tags.
 */

export const ATTRIBUTES = {
  gender: { type: 'text', sql: 'toString(gender)' },
  region_code: { type: 'text', sql: 'toString(region_code)' },
  branch_code: { type: 'text', sql: 'toString(branch_code)' },
  occupation: { type: 'text', sql: 'toString(occupation)' },
  language: { type: 'text', sql: 'toString(language)' },
  elder_mode: { type: 'boolean', sql: 'elder_mode = 1' },
  age: { type: 'number', sql: ageSql('birth_date', '$TODAY') },
} as const satisfies Record<string, { type: 'text' | 'number' | 'boolean'; sql: string }>

export type AttributeName = keyof typeof ATTRIBUTES
export const ATTRIBUTE_OPS = ['eq', 'ne', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte', 'between'] as const

const scalar = z.union([z.string().max(200), z.number().refine(inNumberRange, NUMBER_RANGE_MESSAGE), z.boolean()])
export const attributeLeaf = z.strictObject({
  attribute: z.enum(Object.keys(ATTRIBUTES) as [AttributeName, ...AttributeName[]]),
  op: z.enum(ATTRIBUTE_OPS),
  value: z.union([scalar, z.array(scalar).min(1).max(500)]),
})
export type AttributeLeaf = z.infer<typeof attributeLeaf>

/** The leaf as a predicate over the customers' columns (unqualified), values bound. */
export function attributePredicate(leaf: AttributeLeaf, path: string, b: ParamBinder, today: string): string {
  const a = ATTRIBUTES[leaf.attribute]
  const list = Array.isArray(leaf.value) ? leaf.value : [leaf.value]
  const need = (n: number | 'list') => {
    if (n === 'list' ? !Array.isArray(leaf.value) : Array.isArray(leaf.value) ? leaf.value.length !== n : n !== 1) {
      throw conditionError(`${path}.value`, `${leaf.op} needs ${n === 'list' ? 'a list of values' : n === 2 ? 'two values [low, high]' : 'one value'}`)
    }
  }
  const bind = (v: unknown, i: number) => {
    const at = Array.isArray(leaf.value) ? `${path}.value.${i}` : `${path}.value`
    if (a.type === 'number') {
      if (typeof v !== 'number') throw conditionError(at, 'expected a number')
      return b.num(v)
    }
    if (a.type === 'boolean') {
      if (typeof v !== 'boolean') throw conditionError(at, 'expected true or false')
      return v ? '1' : '0'
    }
    if (typeof v !== 'string') throw conditionError(at, 'expected a string')
    return b.str(v)
  }
  // The local date is bound once per leaf; `$TODAY` is a marker in code, never user text.
  const x = `(${a.sql.includes('$TODAY') ? a.sql.replaceAll('$TODAY', b.bind('Date32', today)) : a.sql})`
  const ranged = ['gt', 'gte', 'lt', 'lte', 'between'].includes(leaf.op)
  if (ranged && a.type !== 'number') throw conditionError(`${path}.op`, `${leaf.op} applies to numbers; ${leaf.attribute} is not one`)
  const sym = { eq: '=', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const
  switch (leaf.op) {
    case 'eq':
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      need(1)
      return `coalesce(${x} ${sym[leaf.op]} ${bind(list[0], 0)}, 0)`
    case 'ne':
      need(1)
      return `NOT coalesce(${x} = ${bind(list[0], 0)}, 0)`
    case 'between':
      need(2)
      return `coalesce(${x} BETWEEN ${bind(list[0], 0)} AND ${bind(list[1], 1)}, 0)`
    case 'in':
    case 'not_in': {
      need('list')
      const any = `coalesce(${x} IN (${list.map(bind).join(', ')}), 0)`
      return leaf.op === 'in' ? any : `NOT ${any}`
    }
  }
}

/** The bitmap of customers the leaf holds for, as a scalar subquery. */
export function attributeBitmapSql(leaf: AttributeLeaf, path: string, b: ParamBinder, today: string): string {
  return `(SELECT groupBitmapStateIf(customer_key, ${attributePredicate(leaf, path, b, today)}) FROM customers FINAL
    WHERE tenant_id = {tenant:UInt16} AND deleted = 0)`
}
