import { workerData } from 'node:worker_threads'
import { isAppError } from '../core/errors.js'
import { createPii } from '../core/pii.js'
import { prepareMessages, type PrepareSettings } from './ingest.prepare.js'
import type { PoolResult, PoolTask, PoolWorkerData } from './ingest.pool.js'
import { parseJsonBody } from './json-body.js'
import { batchEnvelope, singleMessage } from './segment.schema.js'
import type { TrackingPlan } from './tracking-plan.js'

/**
 * One ingest worker thread (a piscina worker, ingest.pool.ts): a request's body bytes in, its
 * events normalized out. Nothing here touches the engine: only the server's main thread holds
 * the data directory, and it inserts what this returns.
 */

let settings: PrepareSettings | undefined
/** Each tenant's plan as last parsed, by its text: a request carries the text current for it. */
const plans = new Map<number, { text: string; plan: TrackingPlan }>()

function planOf(tenantId: number, text: string | undefined): TrackingPlan | undefined {
  if (text === undefined) {
    plans.delete(tenantId)
    return undefined
  }
  const known = plans.get(tenantId)
  if (known?.text === text) return known.plan
  const plan = JSON.parse(text) as TrackingPlan
  plans.set(tenantId, { text, plan })
  return plan
}

export default function prepare(task: PoolTask): PoolResult {
  if (!settings) {
    const d = workerData as PoolWorkerData
    settings = { pii: createPii(d.secret, { cacheEntries: d.cacheEntries }), sensitiveTraits: new Set(d.sensitiveTraits), backdateMs: d.backdateMs, maxFutureMs: d.maxFutureMs }
  }
  let body: unknown
  try {
    body = parseJsonBody(new Uint8Array(task.body))
  } catch (e) {
    if (isAppError(e)) return { kind: 'refused', code: e.code, message: e.message }
    throw e
  }
  let messages: unknown[]
  let envelope
  if (task.single) {
    const m = singleMessage.safeParse(body)
    if (!m.success) return { kind: 'invalid' }
    messages = [m.data]
    envelope = { type: task.single }
  } else {
    const b = batchEnvelope.safeParse(body)
    if (!b.success) return { kind: 'invalid' }
    messages = b.data.batch
    envelope = { sentAt: b.data.sentAt, context: b.data.context }
  }
  const prepared = prepareMessages(
    { tenantId: task.tenantId, messages, envelope, receivedAt: task.receivedAt, policy: task.policy, plan: planOf(task.tenantId, task.planText), consent: task.consent },
    settings,
  )
  return { kind: 'prepared', prepared }
}
