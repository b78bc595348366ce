import { relayEvery } from '../core/cluster-broadcast.js'
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

export function shareLayoutCaps(layouts: Pick<LayoutService, 'onCapped' | 'countElsewhere'>, channel: ProcessChannel, intervalMs = 100): () => void {
  let batch: CappedServe[] = []
  let stopped = false
  layouts.onCapped((e) => {
    if (!stopped) batch.push(e)
  })
  const stop = relayEvery(
    channel,
    'layout-capped',
    intervalMs,
    () => {
      if (!batch.length) return undefined
      const out = batch
      batch = []
      return out
    },
    (entries) => layouts.countElsewhere(entries as CappedServe[]),
  )
  return () => {
    stopped = true
    batch = []
    stop()
  }
}
