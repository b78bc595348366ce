import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openTestApp, tenantWithKeys, type TestApp } from '../test/app.js'
import { testTagDef } from '../test/fixtures.js'
import { AppError } from './errors.js'
import fs from 'node:fs'
import { LANES, laneSettings, reniceAllowed } from './lanes.js'

/**
 * The engine lanes (core/lanes.ts) on the real embedded engine: their limits reach the engine,
 * a long pipeline query does not hold up the request path, and a pipeline query over its
 * memory limit fails with a coded error while the server goes on serving.
 */

let t: TestApp
let bank: Awaited<ReturnType<typeof tenantWithKeys>>
const auth = (key: string) => ({ authorization: `Bearer ${key}` })

beforeAll(async () => {
  t = await openTestApp({
    PIPELINE_RETRIES: '0',
    LANE_REQUEST_MAX_MEMORY_MB: '1024',
    LANE_INGEST_MAX_THREADS: '2',
    LANE_PIPELINE_MAX_THREADS: '1',
    LANE_PIPELINE_MAX_MEMORY_MB: '64',
    LANE_PIPELINE_PRIORITY: '7',
  })
  bank = await tenantWithKeys(t, 'lanes-bank')
  const put = await t.app.inject({
    method: 'PUT',
    url: '/v1/tags/elder',
    headers: auth(bank.admin),
    payload: testTagDef('elder', 'boolean', { kind: 'rule', when: { feature: 'age', op: 'gte', value: 60 } }, {}, ['service', 'marketing']),
  })
  expect(put.statusCode).toBe(201)
}, 60_000)

afterAll(async () => {
  await t?.close()
})

const settingsRow = z.object({ db: z.string(), threads: z.coerce.number(), memory: z.coerce.number(), priority: z.coerce.number(), nice: z.coerce.number() })
const SETTINGS_SQL =
  "SELECT currentDatabase() AS db, getSetting('max_threads') AS threads, getSetting('max_memory_usage') AS memory, getSetting('priority') AS priority, getSetting('os_threads_nice_value_query') AS nice"

describe('engine lanes', () => {
  it('each lane is its own session with its own limits, and every lane selected the database', async () => {
    const seen = Object.fromEntries(await Promise.all(LANES.map(async (l) => [l, (await t.engine.db.lane(l).system.query(SETTINGS_SQL, {}, settingsRow))[0]!] as const)))
    const database = seen.request!.db
    expect(database).not.toBe('default')
    expect(seen.request).toMatchObject({ db: database, memory: 1024 * 2 ** 20, priority: 1, nice: 0 })
    expect(seen.ingest).toMatchObject({ db: database, threads: 2, memory: 4096 * 2 ** 20, priority: 1, nice: 0 })
    // The pipeline lane's nice is its default (19): pipelines take only the cycles nobody else wants.
    expect(seen.pipeline).toEqual({ db: database, threads: 1, memory: 64 * 2 ** 20, priority: 7, nice: 19 })
    // A SET on one lane stays there: sessions do not cross lanes.
    await t.engine.db.lane('pipeline').system.command('SET max_threads = 1')
    await t.engine.db.lane('ingest').system.command('SET max_block_size = 1234')
    const [req] = await t.engine.db.system.query("SELECT getSetting('max_block_size') AS b", {}, z.object({ b: z.coerce.number() }))
    expect(req!.b).not.toBe(1234)
    expect(t.engine.db.lane('pipeline').laneName).toBe('pipeline')
    expect(t.engine.db.lane('pipeline').lane('request')).toBe(t.engine.db)
  })

  it('a long query on the pipeline lane does not hold up request-path queries; on its own lane a query waits for it', async () => {
    // 40 blocks of one row, 100 ms each: about 4 s holding the pipeline lane's connection. Bound,
    // as the pipelines' statements are: chdb-node chained every bound statement of the process,
    // so an unbound long query here once hid that the lanes still waited for each other.
    const pipeline = t.engine.db.lane('pipeline').system
    const started = performance.now()
    let longEnded = 0
    const long = pipeline
      .query('SELECT sleepEachRow(0.1) FROM numbers({rows:UInt32}) SETTINGS max_block_size = 1', { rows: 40 })
      .then(() => (longEnded = performance.now()))
    await new Promise((r) => setTimeout(r, 200))
    const answered: number[] = []
    for (let i = 0; i < 5; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/tags', headers: auth(bank.read) })
      expect(res.statusCode).toBe(200)
      await t.engine.db.forTenant(bank.tenant.id).query('SELECT count() AS n FROM customers WHERE tenant_id = {tenant:UInt16}')
      // An event is answered once the ingest lane has stored it.
      const sent = await t.app.inject({
        method: 'POST',
        url: '/v1/batch',
        headers: auth(bank.write),
        payload: { batch: [{ type: 'track', event: 'Lane Probe', userId: `8101000000${i}`, messageId: `lane-probe-${i}` }] },
      })
      expect(sent.statusCode).toBe(200)
      answered.push(performance.now())
    }
    // Every request-path answer came while the long query still held its lane.
    expect(longEnded).toBe(0)
    // The same light query on the pipeline lane queues behind the long one.
    await pipeline.query('SELECT 1')
    const queuedAt = performance.now()
    await long
    expect(Math.max(...answered)).toBeLessThan(longEnded)
    expect(queuedAt).toBeGreaterThanOrEqual(longEnded)
    expect(longEnded - started).toBeGreaterThan(2000)
  })

  it('the engine threads working for a pipeline query run at the lane nice value, where the process may renice', async () => {
    const status = fs.existsSync('/proc/self/status') ? fs.readFileSync('/proc/self/status', 'utf8') : ''
    if (!reniceAllowed(status)) {
      // Without CAP_SYS_NICE the engine leaves the threads alone; the server says so at start.
      expect(laneSettings({ maxThreads: 0, maxMemoryBytes: 0, priority: 0, nice: 19 })).toEqual({ os_threads_nice_value_query: '19' })
      return
    }
    const nices = () =>
      fs.readdirSync('/proc/self/task').flatMap((tid) => {
        try {
          const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
          return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])]
        } catch {
          return [] // the thread ended between the listing and the read
        }
      })
    const long = t.engine.db.lane('pipeline').system.query('SELECT sleepEachRow(0.1) FROM numbers({rows:UInt32}) SETTINGS max_block_size = 1', { rows: 15 })
    let seen = 0
    for (let i = 0; i < 20 && seen === 0; i++) {
      await new Promise((r) => setTimeout(r, 50))
      seen = nices().filter((n) => n === 19).length
    }
    await long
    expect(seen).toBeGreaterThan(0)
    // The main thread (the request path's JavaScript) keeps its own priority.
    expect(nices()[0]).toBe(0)
  })

  it('a pipeline query over its lane memory limit fails with QUERY_MEMORY_LIMIT, and serving and later runs go on', async () => {
    const pipeline = t.engine.db.lane('pipeline').system
    const err = await pipeline.query('SELECT length(groupArray(toString(number))) AS n FROM numbers(20000000)').then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(AppError)
    expect(err).toMatchObject({ code: 'QUERY_MEMORY_LIMIT', status: 503 })
    expect((err as AppError).message).toMatch(/pipeline lane.*LANE_PIPELINE_MAX_MEMORY_MB/)
    // The same query is within the request lane's larger limit.
    const [ok] = await t.engine.db.system.query('SELECT length(groupArray(toString(number))) AS n FROM numbers(2000000)', {}, z.object({ n: z.coerce.number() }))
    expect(ok!.n).toBe(2_000_000)
    // The server answers, and the pipeline lane runs the bank's tags afterwards.
    expect((await t.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200)
    const run = await t.app.inject({ method: 'POST', url: '/v1/pipelines/runs', headers: auth(bank.admin), payload: { mode: 'full', wait: true } })
    expect(run.statusCode).toBe(200)
    expect(run.json().status).toBe('succeeded')
  })
})

describe('reniceAllowed', () => {
  const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`
  it.each([
    ['root', '000001ffffffffff', true],
    ['CAP_SYS_NICE alone', '0000000000800000', true],
    ['no capabilities', '0000000000000000', false],
    ['everything but CAP_SYS_NICE', '000001ffff7fffff', false],
    ['no CapEff line', '', false],
  ])('%s', (_name, capEff, allowed) => {
    expect(reniceAllowed(capEff === '' ? 'Name:\tnode\n' : status(capEff))).toBe(allowed)
  })
})
