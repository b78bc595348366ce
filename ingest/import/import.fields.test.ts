import { describe, expect, it } from 'vitest'
import { zonedToUtc } from '../../core/time.js'
import { date, dateTime, flag, id, Invalid, money, oneOf, orDefault, rowSchema } from './import.fields.js'
import { splitCsvLine } from './import.formats.js'

const env = { zone: 'Asia/Shanghai' }
const ok = <T>(v: T | Invalid) => {
  if (v instanceof Invalid) throw new Error(`unexpected: ${v.message}`)
  return v
}
const err = (v: unknown) => (v instanceof Invalid ? v.message : `accepted ${JSON.stringify(v)}`)

describe('import field types', () => {
  it('money keeps exact cents and refuses what would be rounded', () => {
    const m = money()
    expect(['12', '12.3', '0012.30', '-0.5', '.5', '12.300', 7, 1234.56, '1e3'].map((v) => ok(m.parse(v, env)))).toEqual([
      '12.00', '12.30', '12.30', '-0.50', '0.50', '12.30', '7.00', '1234.56', '1000.00',
    ])
    expect(ok(m.parse('12.300000000000001', env))).toBe('12.30') // float noise of a binary column
    expect(err(m.parse('12.345', env))).toBe('more than 2 decimal places')
    expect(err(m.parse('1,000.00', env))).toMatch(/no thousands separators/)
    expect(err(m.parse('99999999999999999', env))).toMatch(/too large/)
    expect(err(money(0).parse('-1', env))).toBe('must be at least 0')
  })

  it('dates accept the usual bank spellings and refuse impossible days', () => {
    const d = date()
    expect(['2024-02-29', '2024/2/9', '20240209', '2024-02-09 00:00:00.000'].map((v) => ok(d.parse(v, env)))).toEqual(['2024-02-29', '2024-02-09', '2024-02-09', '2024-02-09'])
    expect(err(d.parse('2023-02-29', env))).toMatch(/calendar date/)
    expect(err(d.parse('1899-12-31', env))).toMatch(/calendar date/)
    expect(err(d.parse('09/02/2024', env))).toMatch(/YYYY-MM-DD/)
  })

  it('date-times without an offset are local to the zone, daylight saving included', () => {
    const dt = dateTime()
    expect(ok(dt.parse('2024-03-01 08:00:00', env))).toBe('2024-03-01 00:00:00.000')
    expect(ok(dt.parse('2024-03-01T08:00:00.5+08:00', { zone: 'UTC' }))).toBe('2024-03-01 00:00:00.500')
    expect(ok(dt.parse('2024-03-01', env))).toBe('2024-02-29 16:00:00.000')
    const berlin = { zone: 'Europe/Berlin' }
    expect(ok(dt.parse('2024-03-31 01:30:00', berlin))).toBe('2024-03-31 00:30:00.000') // CET
    expect(ok(dt.parse('2024-03-31 03:30:00', berlin))).toBe('2024-03-31 01:30:00.000') // CEST, same day
    expect(ok(dt.parse('2024-10-27 12:00:00', berlin))).toBe('2024-10-27 11:00:00.000')
    expect(zonedToUtc(Date.UTC(2024, 6, 1, 12), 'America/New_York')).toBe(Date.UTC(2024, 6, 1, 16))
    expect(err(dt.parse('2024-13-01 00:00:00', env))).toMatch(/not a valid date-time/)
    expect(err(dt.parse('yesterday', env))).toMatch(/expected a date-time/)
  })

  it('flags, enums with aliases, identifiers', () => {
    expect(['1', 'true', 'Y', '是', 0, false].map((v) => ok(flag().parse(v, env)))).toEqual([1, 1, 1, 1, 0, 0])
    const g = oneOf(['unknown', 'male', 'female'], { 男: 'male', F: 'female' })
    expect(['MALE', '男', 'f'].map((v) => ok(g.parse(v, env)))).toEqual(['male', 'male', 'female'])
    expect(err(id().parse(2 ** 60, env))).toMatch(/too large to be exact/)
    expect(ok(id().parse(12345, env))).toBe('12345')
    expect(err(id().parse('a\u0001b', env))).toMatch(/control characters/)
    expect(err(id().parse('\uFFFD\uFFFD', env))).toMatch(/UTF-8/)
  })

  it('a row schema applies defaults, requires what it must, and refuses unknown columns', () => {
    const s = rowSchema({ customer_no: id(), gender: orDefault(oneOf(['unknown', 'male']), 'unknown') }, env)
    expect(s.parse({ customer_no: ' C1 ', gender: '' })).toEqual({ customer_no: 'C1', gender: 'unknown' })
    expect(s.parse({ customer_no: 'C1' })).toEqual({ customer_no: 'C1', gender: 'unknown' })
    const r = s.safeParse({ gender: 'male', x: 1 })
    expect(r.success ? [] : r.error.issues.map((i) => [i.code, i.path.join('.'), i.message])).toEqual([
      ['custom', 'customer_no', 'required'],
      ['unrecognized_keys', '', 'Unrecognized key: "x"'],
    ])
  })

  it('splits a CSV header with quotes', () => {
    expect(splitCsvLine('a, "b,c" ,"d""e"')).toEqual(['a', 'b,c', 'd"e'])
  })
})
