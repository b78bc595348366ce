import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEMO_BANKS } from '../demo/demo.banks.js'
import { clusterEnv, demoCredentials, onNewConnection, removeCluster, startClusterProcess } from '../test/cluster.js'
import { mainThreadTicks, type ServerProcess } from '../test/server-process.js'

// The notification service pulls a bank's due pushes from whichever API process takes its
// connection (`QIANMIAN_API_PROCESSES=2`). A target is handed out once while its lease runs,
// whichever process answers each pull, and an acknowledgement reaches it from either. A customer
// who turns personalization off through one process is served by both as such from then on.
const { dataDir, env } = clusterEnv('cluster-pulls', { QIANMIAN_DEMO: 'true', QIANMIAN_DEMO_CUSTOMERS: '300', QIANMIAN_DEMO_DAYS: '2' })
let server: ServerProcess | undefined
afterAll(() => removeCluster(server, dataDir))

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies of several routes, checked by what each test expects
type Json = any
const call = (url: string, method: string, route: string, key: string, body?: unknown) => onNewConnection(url, method, route, key, body) as Promise<{ status: number; json: Json }>

let api: number[] = []
let key: (role: string) => string
beforeAll(async () => {
  ;({ server, api } = await startClusterProcess(env))
  const bank = demoCredentials(dataDir).find((c) => c.slug === DEMO_BANKS[0]!.slug)!
  key = (role: string) => bank.keys.find((k) => k.role === role)!.key
}, 300_000)

describe('pushes pulled from several API processes', () => {
  it('hands each due target out once while its lease runs, whichever process answers, and takes acknowledgements at either', { timeout: 300_000 }, async () => {
    expect(api).toHaveLength(2)

    // A security tip to every customer of the bank, due now: it goes out at any hour.
    const campaign = {
      name: 'fraud tip',
      purpose: 'security',
      priority: 'high',
      schedule: { kind: 'once', at: new Date(Date.now() - 60_000).toISOString() },
      message: { body: { zh: '谨防电信诈骗', en: 'Beware of phone fraud' } },
    }
    const saved = await call(server!.url, 'PUT', '/v1/push/campaigns/fraud-tip', key('admin'), campaign)
    expect(saved.status, JSON.stringify(saved.json)).toBe(201)
    const run = await call(server!.url, 'POST', '/v1/push/campaigns/fraud-tip/run', key('admin'), {})
    expect(run.status, JSON.stringify(run.json)).toBe(200)
    const queued = run.json.campaigns[0].queued as number
    expect(queued).toBeGreaterThan(60)

    // Pulls of 20 in turn, each on a new connection, so the two processes answer them in turn.
    const before = api.map(mainThreadTicks)
    const handed: string[] = []
    for (let i = 0; i < Math.ceil(queued / 20) + 2; i++) {
      const pulled = await call(server!.url, 'POST', '/v1/push/pull', key('push'), { limit: 20, leaseSeconds: 600 })
      expect(pulled.status, JSON.stringify(pulled.json)).toBe(200)
      handed.push(...pulled.json.targets.map((t: { targetId: string }) => t.targetId))
    }
    api.forEach((pid, i) => expect(mainThreadTicks(pid)).toBeGreaterThan(before[i]!))
    expect(new Set(handed).size).toBe(handed.length)
    expect(handed).toHaveLength(queued)

    // Acknowledged on new connections too: every one accepted once, wherever it was leased.
    const acked = await Promise.all(
      [handed.slice(0, queued / 2), handed.slice(queued / 2)].map((ids) => call(server!.url, 'POST', '/v1/push/ack', key('push'), { results: ids.map((targetId) => ({ targetId, status: 'delivered' })) })),
    )
    expect(acked.map((a) => a.json)).toEqual([
      { accepted: Math.floor(queued / 2), rejected: [] },
      { accepted: queued - Math.floor(queued / 2), rejected: [] },
    ])
    const again = await call(server!.url, 'POST', '/v1/push/pull', key('push'), { limit: 100, leaseSeconds: 600 })
    expect(again.json.targets).toEqual([])
  })
})

describe('the personalization switch on several API processes', () => {
  it('is off on every process as soon as the change is answered', { timeout: 120_000 }, async () => {
    const prefix = DEMO_BANKS[0]!.customerPrefix
    const layouts = async (no: string) => (await Promise.all(Array.from({ length: 6 }, () => call(server!.url, 'GET', `/v1/layout?customerId=${no}`, key('layout'))))).map((r) => r.json)
    // A customer both processes personalize (not in the holdout).
    let no = ''
    for (let k = 1; k <= 40 && !no; k++) {
      const c = `${prefix}${String(k).padStart(10, '0')}`
      if ((await layouts(c)).every((l) => l.personalized === true)) no = c
    }
    expect(no).not.toBe('')
    const off = await call(server!.url, 'PUT', `/v1/customers/${no}/consents`, key('consent'), { purpose: 'personalization', granted: false, source: 'app', noticeVersion: 'v1', at: new Date().toISOString() })
    expect(off.status, JSON.stringify(off.json)).toBe(200)
    expect((await layouts(no)).map((l) => [l.personalized, l.personalizedReason])).toEqual(Array(6).fill([false, 'personalization_off']))
  })
})
