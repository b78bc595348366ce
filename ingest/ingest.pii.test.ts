import { describe, expect, it } from 'vitest'
import { loadConfig } from '../core/config.js'
import { createMetrics } from '../core/metrics.js'
import { createPii } from '../core/pii.js'
import type { ValuePolicy } from '../core/pii.scan.js'
import { createIngestService } from './ingest.service.js'
import type { PendingEvent } from './normalize.js'
import type { TrackingPlans } from './tracking-plan.js'

const pii = createPii('test-secret-test-secret-test-secret')
const noPlans = { current: async () => undefined } as unknown as TrackingPlans

function service(policies: Record<number, ValuePolicy>) {
  const stored: PendingEvent[] = []
  const metrics = createMetrics({ collectDefault: false })
  const svc = createIngestService({
    sink: { submit: async (_t, events) => (stored.push(...events), { stored: events.length, duplicates: 0 }) },
    plans: noPlans,
    pii,
    metrics,
    config: loadConfig({}).ingest,
    valuePolicy: async (t) => policies[t] ?? 'digest',
  })
  return { svc, stored, metrics }
}
const batch = (note: string) => [{ type: 'track', messageId: `m-${note.length}`, userId: 'C1', event: 'e', properties: { note, tel: '13812345678' } }]

describe('the value scan on the ingest path', () => {
  it("applies each bank's policy, digests under each bank's key, and counts what it found per bank and kind", async () => {
    const { svc, stored, metrics } = service({ 2: 'mask' })
    const input = (tenantId: number) => ({ tenantId, actor: 'k', messages: batch('邮箱 wang@example.cn'), envelope: {}, single: false })
    await svc.ingest(input(1))
    await svc.ingest(input(2))
    await svc.ingest(input(3))
    const [a, b, c] = stored.map((e) => JSON.parse(e.properties) as Record<string, string>)
    expect(a!.tel).toBe(`[phone:${pii.hash('phone', '13812345678', 1)}]`)
    expect(b).toEqual({ note: '邮箱 w***@example.cn', tel: '138****5678' })
    // Equal numbers in two banks do not match.
    expect(c!.tel).not.toBe(a!.tel)
    const text = await metrics.registry.metrics()
    expect(text).toContain('qianmian_ingest_pii_found_total{tenant="1",kind="phone",app="qianmian"} 1')
    expect(text).toContain('qianmian_ingest_pii_found_total{tenant="2",kind="email",app="qianmian"} 1')
  })
})
