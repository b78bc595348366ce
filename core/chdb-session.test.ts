import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import { createChdbConnection } from 'chdb/connection'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sessionParamsStatement, asEngineSession } from './chdb-session.js'

/** A client over a chDB connection of the shared directory, wrapped or as chdb-node ships it. */
function open(dir: string, wrap: boolean): ClickHouseClient {
  const raw = createChdbConnection({ path: dir })
  const connection = wrap ? asEngineSession(raw) : raw
  return createClient({ connection } as Parameters<typeof createClient>[0])
}

async function one(c: ClickHouseClient, query: string, params?: Record<string, unknown>): Promise<unknown> {
  const rs = await c.query({ query, query_params: params, format: 'JSONEachRow' })
  const rows = await rs.json<{ v: unknown }>()
  return rows[0]?.v
}

/** Long enough to still be running when a second statement is sent from another connection. */
const SLOW = 'SELECT count() AS v FROM numbers(1000000000) WHERE number % {m:UInt32} = 1'

describe('query parameters through the session (embedded)', () => {
  let dir: string
  let wrapped: ClickHouseClient
  let other: ClickHouseClient
  let native: ClickHouseClient

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qianmian-params-'))
    wrapped = open(dir, true)
    other = open(dir, true)
    native = open(dir, false)
  })
  afterAll(async () => {
    for (const c of [wrapped, other, native]) await c.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  // Each value is read back through the session path and chdb-node's own binder: the two must agree.
  const cases: [string, unknown][] = [
    ['String', 'plain'],
    ['String', "it's"],
    ['String', 'back\\slash \\N \\\''],
    ['String', 'tab\tnew\nline\rret'],
    ['String', "a'; DROP TABLE x; --"],
    ['String', '中文 客户 🙂'],
    ['String', ''],
    ['String', '{x:UInt8}'],
    ['UInt16', 7],
    ['UInt64', '18446744073709551615'],
    ['Int64', -9007199254740991],
    ['Float64', 0.1],
    ['Bool', true],
    ['Date', '2026-12-02'],
    ['DateTime', '2026-12-02 03:04:05'],
    ['DateTime64(3)', '2026-12-02 03:04:05.678'],
    ['UUID', '9f1c2b4e-0d7a-4c55-8e1f-2a3b4c5d6e7f'],
    ['Array(String)', ['a', "b'c", 'd\\e', '']],
    ['Array(UInt32)', [1, 2, 3]],
    ['Array(String)', []],
    ['Nullable(String)', null],
    ['Map(String, UInt8)', { a: 1, "b'": 2 }],
  ]
  it.each(cases)('binds %s %j as the native binder does', async (type, value) => {
    const q = `SELECT toString({v:${type}}) AS v`
    const expected = await one(native, q, { v: value })
    await expect(one(wrapped, q, { v: value })).resolves.toEqual(expected)
  })

  it('binds a JS Date to a DateTime the way a server reads the client\'s parameter', async () => {
    const d = new Date(Date.UTC(2026, 11, 2, 3, 4, 5))
    await expect(one(wrapped, "SELECT toUnixTimestamp({v:DateTime}) AS v", { v: d })).resolves.toBe(d.getTime() / 1000)
  })

  it('runs a bound statement beside a long bound statement of another connection instead of after it', async () => {
    // chdb-node's binder chains every bound statement of the process: this one waited for the
    // whole long one. Through the session it answers while the long one still runs.
    const order: string[] = []
    const slow = one(wrapped, SLOW, { m: 7 }).then(() => order.push('slow'))
    await new Promise((r) => setTimeout(r, 300))
    await one(other, 'SELECT {x:UInt8} AS v', { x: 5 }).then((v) => {
      expect(v).toBe(5)
      order.push('short')
    })
    await slow
    expect(order).toEqual(['short', 'slow'])
  })

  it('keeps concurrent bound statements of several connections apart', async () => {
    const clients = [wrapped, other, open(dir, true)]
    try {
      const jobs = Array.from({ length: 120 }, (_, i) =>
        one(clients[i % clients.length]!, 'SELECT concat({s:String}, \':\', toString({n:UInt32})) AS v', { s: `c${i}`, n: i }),
      )
      const got = await Promise.all(jobs)
      expect(got).toEqual(jobs.map((_, i) => `c${i}:${i}`))
    } finally {
      await clients[2]!.close()
    }
  })

  it('refuses a statement that names a parameter an earlier statement left on the session', async () => {
    await expect(one(wrapped, 'SELECT {left:UInt8} AS v', { left: 9 })).resolves.toBe(9)
    await expect(one(wrapped, 'SELECT {left:UInt8} AS v')).rejects.toThrow(/Substitution `left` is not set/)
    // A statement without placeholders is unaffected.
    await expect(one(wrapped, 'SELECT 3 AS v')).resolves.toBe(3)
  })

  it('carries parameters of an insert and a command', async () => {
    await wrapped.command({ query: 'CREATE TABLE IF NOT EXISTS p_t (k String, n UInt32) ENGINE = MergeTree ORDER BY k' })
    await wrapped.command({ query: 'INSERT INTO p_t SELECT {k:String}, number FROM numbers({n:UInt32})', query_params: { k: "x'y", n: 3 } })
    await wrapped.insert({ table: 'p_t', values: [{ k: 'z', n: 9 }], format: 'JSONEachRow' })
    await expect(one(wrapped, 'SELECT toString(count()) AS v FROM p_t WHERE k = {k:String}', { k: "x'y" })).resolves.toBe('3')
    await expect(one(wrapped, 'SELECT toString(sum(n)) AS v FROM p_t WHERE k = {k:String}', { k: 'z' })).resolves.toBe('9')
  })

  it('keeps the process\'s file work moving while statements queue on one connection', async () => {
    // Queued on chdb-node's connection, each waiting statement held a libuv pool thread (4 by
    // default) inside the native call: file reads and writes waited until statements ended.
    const session = wrapped
    let finished = 0
    const queued = Array.from({ length: 5 }, () =>
      one(session, 'SELECT count() AS v FROM numbers(300000000) WHERE number % 7 = 1').then(() => finished++),
    )
    await new Promise((r) => setTimeout(r, 200))
    const probe = path.join(dir, 'probe.txt')
    await fs.promises.writeFile(probe, 'x')
    await fs.promises.readFile(probe)
    const finishedAtFileDone = finished
    await Promise.all(queued)
    expect(finishedAtFileDone).toBe(0)
  })

  it('binds a value larger than a statement may be (a flush\'s 40,000 message ids, 1 MB)', async () => {
    const ids = Array.from({ length: 40_000 }, (_, i) => `m-${i}-d5839442539f`)
    await expect(one(wrapped, 'SELECT toString(length({ids:Array(String)})) AS v', { ids })).resolves.toBe('40000')
    const more = [...ids, ...ids, ...ids]
    await expect(one(wrapped, 'SELECT toString(length({ids:Array(String)})) AS v', { ids: more })).resolves.toBe('120000')
    await expect(one(wrapped, 'SELECT {x:String} AS v', { x: 'small after large' })).resolves.toBe('small after large')
  })

  it('refuses a parameter name that is not an identifier before anything is sent', () => {
    expect(() => sessionParamsStatement({ 'a = 1, b': 1 })).toThrow(/Invalid query parameter name/)
    expect(sessionParamsStatement({ a: "o'k", b: 2 })).toMatch(/^SET param_a = '[^,]*', param_b = '2'$/)
  })
})
