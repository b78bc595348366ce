import { describe, expect, it } from 'vitest'
import { assertNoRawC2Value } from './tag.c2guard.js'

const refused = (sql: string) => {
  try {
    assertNoRawC2Value(sql)
    return false
  } catch (e) {
    expect((e as { code: string }).code).toBe('VALIDATION_FAILED')
    return true
  }
}

describe('SQL tags may not pass C2 values through', () => {
  it('refuses a value that is a C2 column, converted, aggregated or aliased on the way', () => {
    for (const sql of [
      'SELECT customer_key, birth_date AS value FROM $customers',
      'SELECT customer_key, toString(birth_date) AS value FROM $customers',
      'SELECT customer_key, toString(sum(balance)) AS value FROM $accounts GROUP BY customer_key',
      'SELECT c.customer_key, CAST(c.birth_date AS String) AS value FROM $customers AS c',
      'SELECT customer_key, toString(argMax(outstanding, start_date)) AS value FROM $loans GROUP BY customer_key',
      'SELECT customer_key, toString(maxIf(amount, status = \'paid\')) AS value FROM $bills GROUP BY customer_key',
      'SELECT customer_key, b AS value FROM (SELECT customer_key, birth_date AS b FROM $customers)',
      'WITH x AS (SELECT customer_key, balance AS bal FROM $accounts) SELECT customer_key, toString(bal) AS `value` FROM x',
      'SELECT customer_key, if(gender = \'female\', toString(birth_date), \'\') AS value FROM $customers',
      'SELECT customer_key, coalesce(toString(birth_date), \'none\') AS value FROM $customers',
      // An alias without AS, string and array functions, an index, arithmetic: the value unchanged.
      'SELECT customer_key, toString(birth_date) value FROM $customers',
      'SELECT customer_key, v AS value FROM (SELECT customer_key, toString(balance) v FROM $accounts)',
      'SELECT customer_key, substring(toString(birth_date), 1) AS value FROM $customers',
      'SELECT customer_key, lower(toString(birth_date)) AS value FROM $customers',
      'SELECT customer_key, [toString(birth_date)][1] AS value FROM $customers',
      'SELECT customer_key, arrayElement([toString(balance)], 1) AS value FROM $accounts',
      "SELECT customer_key, replaceAll(toString(amount), '', '') AS value FROM $bills",
      'SELECT customer_key, toString(outstanding + 0) AS value FROM $loans',
      "SELECT customer_key, if(birth_date > '1900-01-01', toString(birth_date), '') AS value FROM $customers",
    ]) expect(refused(sql), sql).toBe(true)
  })

  it('allows values derived from C2 columns, and values from other columns', () => {
    for (const sql of [
      "SELECT customer_key, multiIf(dateDiff('year', birth_date, today) >= 60, 'elder', 'other') AS value FROM $customers, $run",
      "SELECT customer_key, if(sum(balance) >= 500000, 'high', 'standard') AS value FROM $accounts GROUP BY customer_key",
      'SELECT customer_key, toString(intDiv(dateDiff(\'year\', birth_date, today), 10) * 10) AS value FROM $customers, $run',
      'SELECT customer_key, toString(count()) AS value FROM $bills GROUP BY customer_key',
      'SELECT customer_key, region_code AS value FROM $customers',
      // The raw column is read, but only to filter.
      "SELECT customer_key, 'true' AS value FROM $customers WHERE birth_date < '1960-01-01'",
      "SELECT customer_key, multiIf(balance >= 500000, 'high', balance >= 50000, 'mid', 'low') AS value FROM $accounts",
      'SELECT c.customer_key, c.region_code AS value FROM $customers AS c',
      'SELECT customer_key, toString(countIf(amount > 1000)) AS value FROM $bills GROUP BY customer_key',
    ]) expect(refused(sql), sql).toBe(false)
  })
})

describe('saving a SQL tag', () => {
  it('is refused with the field named when its value passes a C2 column through', async () => {
    const { parseDefinition } = await import('./tag.repository.js')
    const def = (sql: string) => ({ name: 'sql_tag', type: 'enum', values: ['a', 'b'], description: { zh: '标签', en: 'tag' }, owner: 'qa', purpose: ['service'], rule: { kind: 'sql', sql } })
    expect(() => parseDefinition(def("SELECT customer_key, region_code AS value FROM $customers"))).not.toThrow()
    try {
      parseDefinition(def('SELECT customer_key, toString(birth_date) AS value FROM $customers'))
      expect.unreachable()
    } catch (e) {
      expect((e as { issues: unknown[] }).issues[0]).toMatchObject({ field: 'rule.sql', code: 'SQL_C2_VALUE' })
    }
  })
})
