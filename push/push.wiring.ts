import type { EventWriter } from '../ingest/event-writer.js'
import type { PipelineRunner } from '../pipelines/pipeline.runner.js'
import type { PushModule } from './push.module.js'

/** How often every tenant's scheduled campaigns are targeted (besides after each tag run). */
export const PUSH_TARGETING_CRON = '*/5 * * * *'

/**
 * Connects push to the rest of the process: targeting is the `push` pipeline (after every tag
 * run, and every five minutes for cron and one-off campaigns, with run history and leases like
 * any pipeline), and event triggers see every batch the ingest writer has stored.
 */
export function wirePush(deps: { push: PushModule; runner: PipelineRunner; writer: EventWriter }): void {
  const { push } = deps
  deps.runner.register(
    'push',
    async ({ tenantId, asOf, signal }) => {
      const r = await push.runTargeting(tenantId, { asOf, signal })
      const rows = r.campaigns.reduce((s, c) => s + c.targeted, 0)
      return { rows, details: { targetingRun: r.runId, campaigns: r.campaigns, errors: r.errors } }
    },
    { after: 'segments', cron: PUSH_TARGETING_CRON },
  )
  deps.writer.onStored((tenantId, events) => push.onEvents(tenantId, events))
}
