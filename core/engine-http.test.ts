import { createClient } from '@clickhouse/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTestEngine, type TestEngine } from '../test/engine.js'
import { createClickHouse, type ClickHouseHandle } from './clickhouse.js'
import { createLaneDb, type Db } from './db.js'
import { ENGINE_USER, startEngineHttp, type EngineHttp } from './engine-http.js'

/**
 * Another process's view of the embedded engine: a remote-mode handle (as `CLICKHOUSE_URL` makes
 * one) against the engine endpoint of this process's engine. What the API processes of a
 * several-process start read and write goes through exactly this.
 */
describe('the engine endpoint: the embedded engine over ClickHouse HTTP', () => {
  let engine: TestEngine
  let endpoint: EngineHttp
  let remote: ClickHouseHandle
  let db: Db
  const token = 't'.repeat(40)

  beforeAll(async () => {
    engine = await openTestEngine()
    endpoint = await startEngineHttp({ handle: engine.handle, token, log: engine.log })
    remote = await createClickHouse({
      dataDir: engine.dataDir,
      clickhouse: { mode: 'remote', url: endpoint.url, user: ENGINE_USER, password: token, database: engine.handle.database, requestTimeoutMs: 30_000 },
    })
    db = createLaneDb(remote)
    await engine.db.system.command('CREATE TABLE IF NOT EXISTS eh_rows (id UInt64, name String, tags Array(String), at DateTime64(3, \'UTC\')) ENGINE = MergeTree ORDER BY id')
  }, 120_000)
  afterAll(async () => {
    await remote?.close()
    await endpoint?.close()
    await engine?.close()
  })

  it('binds parameters as a server does, whatever the characters', async () => {
    const tricky = ["it's", 'back\\slash', 'tab\there', 'new\nline', '引号"和\'撇号', '{x:String}', "'); DROP TABLE eh_rows; --"]
    for (const s of tricky) {
      const [row] = await db.system.query<{ v: string; n: number }>('SELECT {s:String} AS v, length({s:String}) AS n', { s })
      expect(row).toEqual({ v: s, n: Buffer.byteLength(s) })
    }
    const [arr] = await db.system.query<{ v: string[] }>('SELECT {a:Array(String)} AS v', { a: tricky })
    expect(arr!.v).toEqual(tricky)
    const [nums] = await db.system.query<{ s: string }>('SELECT toString(sum(x)) AS s FROM (SELECT arrayJoin({ids:Array(UInt64)}) AS x)', { ids: Array.from({ length: 40_000 }, (_, i) => i + 1) })
    expect(nums!.s).toBe(String((40_000 * 40_001) / 2))
    const [when] = await db.system.query<{ d: string }>("SELECT toString({d:DateTime64(3, 'UTC')}) AS d", { d: new Date('2026-12-01T08:09:10.123Z') })
    expect(when!.d).toBe('2026-12-01 08:09:10.123')
  })

  it('writes through the insert paths and reads the rows back on the engine itself', async () => {
    await db.system.insertTsv('eh_rows', ['id', 'name', 'tags', 'at'], [
      [1, 'tab\tand\nnewline', ['a', "b'c"], '2026-12-01 00:00:00.000'],
      [2, '中文', [], '2026-12-01 00:00:01.000'],
    ])
    await db.system.insert('eh_rows', [{ id: 3, name: 'json', tags: ['x'], at: '2026-12-01 00:00:02.000' }])
    const rows = await engine.db.system.query<{ id: string; name: string; tags: string[] }>('SELECT toString(id) AS id, name, tags FROM eh_rows ORDER BY id')
    expect(rows).toEqual([
      { id: '1', name: 'tab\tand\nnewline', tags: ['a', "b'c"] },
      { id: '2', name: '中文', tags: [] },
      { id: '3', name: 'json', tags: ['x'] },
    ])
  })

  it('runs each lane on the same lane of the engine', async () => {
    for (const lane of ['request', 'ingest', 'pipeline'] as const) {
      const [r] = await db.lane(lane).system.query<{ v: number }>('SELECT 1 AS v')
      expect(r).toEqual({ v: 1 })
    }
  })

  it('answers a statement without FORMAT in the default format, or the one asked for', async () => {
    const plain = await remote.client.exec({ query: "SELECT 'a,b' AS x, 2 AS y" })
    let text = ''
    for await (const c of plain.stream) text += String(c)
    expect(text).toBe('a,b\t2\n')
    const raw = await remote.client.exec({ query: "SELECT 'tab\\there' AS x", clickhouse_settings: { default_format: 'TabSeparatedRaw' } })
    text = ''
    for await (const c of raw.stream) text += String(c)
    expect(text).toBe('tab\there\n')
  })

  it('checks tenant queries as the engine process does (EXPLAIN AST through the endpoint)', async () => {
    await db.forTenant(7).query('SELECT count() FROM events WHERE tenant_id = {tenant:UInt16}')
    await expect(db.forTenant(7).query('SELECT count() FROM events')).rejects.toMatchObject({ code: 'TENANT_SCOPE_VIOLATION' })
  })

  it('gives errors back with the engine code and type', async () => {
    const err = await db.system.query('SELECT * FROM no_such_table_here').catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '60', type: 'UNKNOWN_TABLE' })
    const syntax = await db.system.command('SELEC 1').catch((e: unknown) => e)
    expect(syntax).toMatchObject({ code: '62', type: 'SYNTAX_ERROR' })
  })

  it('refuses a wrong password, a wrong user and no credentials before running anything', async () => {
    for (const [username, password] of [[ENGINE_USER, 'wrong'], ['default', token], [ENGINE_USER, '']] as const) {
      const c = createClient({ url: endpoint.url, username, password, request_timeout: 10_000 })
      const err = await c.command({ query: 'DROP TABLE eh_rows' }).catch((e: unknown) => e)
      expect(err).toMatchObject({ code: '516', type: 'AUTHENTICATION_FAILED' })
      await c.close()
    }
    const bare = await fetch(`${endpoint.url}/?query=SELECT%201`)
    expect(bare.status).toBe(401)
    const [still] = await engine.db.system.query<{ n: string }>("SELECT toString(count()) AS n FROM system.tables WHERE database = currentDatabase() AND name = 'eh_rows'")
    expect(still).toEqual({ n: '1' })
  })

  it('answers ping and compresses when asked', async () => {
    const c = createClient({ url: endpoint.url, username: ENGINE_USER, password: token, database: engine.handle.database, compression: { response: true, request: true } })
    expect((await c.ping()).success).toBe(true)
    const rs = await c.query({ query: 'SELECT number AS n FROM numbers(1000)', format: 'JSONEachRow' })
    expect((await rs.json<{ n: string }>()).length).toBe(1000)
    await c.insert({ table: 'eh_rows', values: [{ id: 4, name: 'gzip', tags: [], at: '2026-12-01 00:00:03.000' }], format: 'JSONEachRow' })
    const [r] = await engine.db.system.query<{ name: string }>('SELECT name FROM eh_rows WHERE id = 4')
    expect(r).toEqual({ name: 'gzip' })
    await c.close()
  })

  it('refuses another database', async () => {
    const c = createClient({ url: endpoint.url, username: ENGINE_USER, password: token, database: 'other_db' })
    await expect(c.query({ query: 'SELECT 1', format: 'JSONEachRow' })).rejects.toMatchObject({ type: 'UNKNOWN_DATABASE' })
    await c.close()
  })
})
