import { AppError, errText } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { RunStore } from './pipeline.runs.js'

/**
 * A run's lease kept for as long as the run lasts. PIPELINE_LEASE_MS is how long a lease
 * outlives a process that died, not how long a run may take: a tag run over millions of
 * customers can take longer. The holder renews it every third of its length, so a renewal that
 * fails or comes late still has two thirds of the lease to succeed in. A renewal that finds the
 * lease gone (another holder's claim is the earliest, or the lease lapsed) aborts the signal: the
 * run stops at its next step and is not recorded done.
 */

export interface HeldLease {
  /** Aborted, with a CONFLICT, once the lease is found lost. */
  readonly signal: AbortSignal
  /** Stops renewing and waits for a renewal in flight, so that a release after it is the last write. */
  stop(): Promise<void>
}

export function holdLease(deps: {
  store: Pick<RunStore, 'renew'>
  log: Logger
  tenantId: number
  pipeline: string
  owner: string
  ttlMs: number
  /** Told once, when the lease is found lost. */
  onLost?: () => void
}): HeldLease {
  const { store, log, tenantId, pipeline, owner, ttlMs } = deps
  const controller = new AbortController()
  const every = Math.max(1, Math.floor(ttlMs / 3))
  let timer: NodeJS.Timeout | undefined
  let inFlight: Promise<void> | undefined
  let stopped = false

  async function renew(): Promise<void> {
    try {
      if (await store.renew(tenantId, pipeline, owner, ttlMs)) return
    } catch (err) {
      // The next renewal tries again; if none gets through before the lease lapses, that one finds it lost.
      log.warn({ tenant: tenantId, pipeline, err: errText(err) }, 'pipeline lease renewal failed; trying again at the next one')
      return
    }
    if (stopped) return
    log.error({ tenant: tenantId, pipeline, owner }, 'pipeline lease lost to another holder while the run was in progress; the run stops at its next step and is not recorded done')
    deps.onLost?.()
    controller.abort(new AppError('CONFLICT', `The ${pipeline} lease was lost while this run was in progress (another process may run it): the run stopped and is not recorded done.`))
  }

  function schedule(): void {
    timer = setTimeout(() => {
      inFlight = renew().finally(() => {
        inFlight = undefined
        if (!stopped && !controller.signal.aborted) schedule()
      })
    }, every)
    // The run itself keeps the process alive; a pending renewal alone should not.
    timer.unref()
  }

  schedule()
  return {
    signal: controller.signal,
    async stop() {
      stopped = true
      clearTimeout(timer)
      await inFlight
    },
  }
}
