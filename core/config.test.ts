import fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ConfigError, configVariables, loadConfig } from './config.js'

const SECRET = 'a-random-secret-of-at-least-32-characters'

describe('loadConfig', () => {
  it('gives the documented defaults and freezes the result', () => {
    const c = loadConfig({})
    expect(c.port).toBe(8080)
    expect(c.clickhouse.mode).toBe('embedded')
    expect(c.clickhouse.database).toBe('qianmian')
    expect(c.dataDir.endsWith('.qianmian')).toBe(true)
    expect(c.demo).toEqual({ mode: 'auto', customers: 20000, days: 30, seed: 42 })
    expect(Object.isFrozen(c)).toBe(true)
    expect(Object.isFrozen(c.clickhouse)).toBe(true)
    expect(() => {
      ;(c as { port: number }).port = 1
    }).toThrow()
  })

  it('switches to a remote server when CLICKHOUSE_URL is set', () => {
    const c = loadConfig({ CLICKHOUSE_URL: 'http://ch:8123', CLICKHOUSE_DATABASE: 'bank_a', QIANMIAN_PII_SECRET: SECRET })
    expect(c.clickhouse).toMatchObject({ mode: 'remote', url: 'http://ch:8123', database: 'bank_a' })
    expect(c.piiSecret).toBe(SECRET)
  })

  it('requires QIANMIAN_PII_SECRET against a server, where each process would otherwise make its own', () => {
    expect(() => loadConfig({ CLICKHOUSE_URL: 'http://ch:8123' })).toThrow(/QIANMIAN_PII_SECRET: required when CLICKHOUSE_URL is set/)
    expect(loadConfig({}).piiSecret).toBeUndefined()
  })

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '' }).port).toBe(8080)
  })

  it.each([
    ['PORT', 'abc', /PORT: expected an integer between 0 and 65535 \(got "abc"\)/],
    ['PORT', '70000', /PORT: expected an integer/],
    ['CLICKHOUSE_URL', 'not a url', /CLICKHOUSE_URL: expected an http\(s\) URL/],
    ['CLICKHOUSE_DATABASE', 'x; DROP', /CLICKHOUSE_DATABASE: expected a ClickHouse identifier/],
    ['QIANMIAN_DEMO', 'maybe', /QIANMIAN_DEMO: expected auto, true or false/],
    ['QIANMIAN_DEFAULT_TIMEZONE', 'Mars/Olympus', /IANA time zone/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL/],
    ['QIANMIAN_DEMO_CUSTOMERS', '-5', /QIANMIAN_DEMO_CUSTOMERS: expected an integer/],
  ])('names %s when it is %s', (variable, value, pattern) => {
    let err: unknown
    try {
      loadConfig({ [variable]: value })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).toMatch(pattern)
    expect((err as ConfigError).issues[0]?.variable).toBe(variable)
  })

  it('reports every bad variable at once and never echoes a secret', () => {
    try {
      loadConfig({ PORT: 'x', QIANMIAN_OPERATOR_TOKEN: 'short-secret', QIANMIAN_DEMO_DAYS: '0' })
      expect.unreachable()
    } catch (e) {
      const err = e as ConfigError
      expect(err.issues.map((i) => i.variable).sort()).toEqual(['PORT', 'QIANMIAN_DEMO_DAYS', 'QIANMIAN_OPERATOR_TOKEN'])
      expect(err.message).not.toContain('short-secret')
    }
  })

  it('is documented: every variable appears in the README configuration table', () => {
    const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8')
    for (const v of configVariables) expect(readme, v).toContain(`| \`${v}\``)
  })
})
