import { relayedPayload, relayMessage } from '../core/cluster-broadcast.js'
import type { ProcessChannel } from '../core/cluster-locks.js'
import type { CappedServe, LayoutService } from './layout.service.js'

/**
 * Layout caps across the API processes of one host (server/cluster.ts). A process counts the
 * capped items it served until a model build has them (layout.service.ts); with several, each
 * counted only its own, so an item capped at once a day could be shown once by each process.
 *
 * Every `intervalMs` each process sends the capped items it served; the engine process relays
 * them, and the others count them as their own. Two layouts of one customer inside one interval,
 * on two processes, may still both show an item.
 */

const TOPIC = 'layout-capped'

export function shareLayoutCaps(layouts: Pick<LayoutService, 'onCapped' | 'countElsewhere'>, channel: ProcessChannel, intervalMs = 100): () => void {
  let batch: CappedServe[] = []
  let stopped = false
  layouts.onCapped((e) => {
    if (!stopped) batch.push(e)
  })
  const timer = setInterval(() => {
    if (!batch.length) return
    const out = batch
    batch = []
    try {
      channel.send(relayMessage(TOPIC, out))
    } catch {
      /* the engine process is gone: this process is stopping */
    }
  }, intervalMs)
  timer.unref()
  const stop = channel.onMessage((m) => {
    const entries = relayedPayload(m, TOPIC) as CappedServe[] | undefined
    if (entries) layouts.countElsewhere(entries)
  })
  return () => {
    stopped = true
    batch = []
    clearInterval(timer)
    stop()
  }
}
