import type { TenantTable } from '../core/db.js'

/**
 * Every tenant table, and how one customer's rows are found in it. This map is the erasure's
 * list of places: a table missing here fails the type check (the record is keyed by
 * TenantTable) and erasure.places.test.ts (which also reads the engine's own list of tables with
 * a tenant_id), so a table added later cannot be forgotten.
 *
 * - `key`: rows whose `customer_key` is one of the customer's keys; deleted.
 * - `keyAndRef`: the same, and rows of other customers naming one of the keys in `ref` (a bill a
 *   family member paid): those rows are theirs and stay, with `ref` cleared.
 * - `keyPair`: rows naming a key in either of two columns (identity links, merges); deleted.
 * - `events`: by key, by customer number (user_id) or by a linked app id (anonymous_id); deleted.
 * - `dedup`: the dedup index, by the message ids of the customer's events (read before they go).
 * - `dedupKeys`: the dedup index as keys (digests of `tenant:message_id`), the same way, read and deleted by key.
 * - `bitmap`: groupBitmap states; the customer's keys are taken out of each state holding them.
 * - `digest`: the audit trail keeps its entries (a regulator needs them); the customer number in
 *   them is replaced by its keyed digest.
 * - `none`: holds no customer data (the reason says what it holds).
 * - `kept`: the erasure's own records (keys and digests only, no number in clear).
 */
export type Place =
  | { by: 'key'; label: string }
  | { by: 'keyAndRef'; ref: string; label: string }
  | { by: 'keyPair'; columns: readonly [string, string]; label: string }
  | { by: 'events'; label: string }
  | { by: 'dedup'; label: string }
  | { by: 'dedupKeys'; label: string }
  | { by: 'bitmap'; label: string }
  | { by: 'digest'; label: string }
  | { by: 'none'; why: string }
  | { by: 'kept'; why: string }

export const PLACES: Record<TenantTable, Place> = {
  api_keys: { by: 'none', why: 'the bank’s API keys' },
  customers: { by: 'key', label: 'profile (stock data imported by the bank)' },
  consents: { by: 'key', label: 'consents (current)' },
  accounts: { by: 'key', label: 'accounts (stock data)' },
  loans: { by: 'key', label: 'loans (stock data)' },
  loan_schedules: { by: 'key', label: 'loan schedules (stock data)' },
  bills: { by: 'keyAndRef', ref: 'payer_key', label: 'bills (stock data), and as the payer of others’ bills' },
  products: { by: 'none', why: 'the bank’s product catalogue' },
  identities: { by: 'key', label: 'identities and device links' },
  events: { by: 'events', label: 'app events' },
  ingest_dedup: { by: 'dedup', label: 'dedup index' },
  ingest_dedup_digests: { by: 'dedupKeys', label: 'dedup index (key lookups)' },
  key_blocks: { by: 'none', why: 'ranges of customer keys claimed by writers' },
  identity_changes: { by: 'keyPair', columns: ['from_key', 'into_key'], label: 'identity link and merge history' },
  customer_merges: { by: 'keyPair', columns: ['from_key', 'into_key'], label: 'customer merges' },
  tracking_plans: { by: 'none', why: 'event schemas' },
  customer_traits: { by: 'key', label: 'traits sent by the app' },
  event_changes: { by: 'none', why: 'row counts per quarter hour, no customer' },
  stock_changes: { by: 'none', why: 'last change time per stock table' },
  tag_definitions: { by: 'none', why: 'tag definitions' },
  tag_event_daily: { by: 'key', label: 'per-day event aggregates of tags' },
  tag_event_days: { by: 'none', why: 'which days the aggregates cover' },
  tag_values: { by: 'key', label: 'current tag values' },
  tag_history: { by: 'key', label: 'tag history' },
  tag_changes: { by: 'key', label: 'tag changes per run' },
  tag_stage: { by: 'key', label: 'tag run staging' },
  tag_scope: { by: 'key', label: 'tag run scope' },
  tag_customer_prints: { by: 'key', label: 'the customers as a tag run read them (key, hash of opening date and deletion)' },
  tag_bitmaps: { by: 'bitmap', label: 'tag bitmaps' },
  tag_state: { by: 'none', why: 'per tag: build, coverage, last run' },
  pipeline_runs: { by: 'none', why: 'run history (counts only)' },
  pipeline_locks: { by: 'none', why: 'run leases' },
  segment_definitions: { by: 'none', why: 'segment rules' },
  segment_members: { by: 'bitmap', label: 'segment memberships' },
  segment_events: { by: 'key', label: 'segment entry and exit history' },
  segment_runs: { by: 'none', why: 'materialization runs (counts only)' },
  tag_numeric: { by: 'key', label: 'numeric tag values by build' },
  layout_catalogs: { by: 'none', why: 'the bank’s layout catalogue' },
  rec_models: { by: 'none', why: 'model builds (metadata)' },
  rec_items: { by: 'none', why: 'item popularity and neighbours (aggregates)' },
  rec_customers: { by: 'key', label: 'model snapshot rows (affinities, exposures)' },
  layout_exposures: { by: 'key', label: 'layout exposures' },
  layout_exposure_lists: { by: 'none', why: 'the modules and items a layout could show, by position (no customer)' },
  push_campaigns: { by: 'none', why: 'campaign definitions' },
  push_policies: { by: 'none', why: 'push policies' },
  push_targets: { by: 'key', label: 'push targets' },
  push_leases: { by: 'key', label: 'push leases' },
  push_outcomes: { by: 'key', label: 'push outcomes' },
  push_campaign_approvals: { by: 'none', why: 'who asked for and who gave a campaign’s approval' },
  push_test_lists: { by: 'key', label: 'push test lists' },
  push_test_sends: { by: 'none', why: 'test sends of campaigns (counts only)' },
  audit_log: { by: 'digest', label: 'audit trail (entries kept, customer number replaced by its digest)' },
  consent_history: { by: 'key', label: 'consent history' },
  consent_categories: { by: 'none', why: 'the mapping of app consent categories' },
  erasure_jobs: { by: 'kept', why: 'erasure records: keys and digests once done' },
  erasure_tombstones: { by: 'kept', why: 'digests of erased identifiers' },
}

/**
 * Tables with a tenant_id that are not tenant tables of the query layer (the platform's registry,
 * read through the system handle): none holds a customer's data.
 */
export const REGISTRY_TABLES: Readonly<Record<string, string>> = {
  tenants: 'the tenant registry',
  tenant_privacy: 'each bank’s retention and privacy settings',
  tenant_cors_origins: 'each bank’s browser origins (CORS)',
}

/** Outside the tables: what the proof notes but the job cannot reach. */
export const OUTSIDE = [
  { place: 'kafka', note: 'Events in the ingest topic age out with its retention (KAFKA_TOPIC retention.ms); a replay is dropped by the tombstone.' },
  { place: 'exports', note: 'Segment exports and customer exports already taken are outside the system; the audit trail lists them (segment.export, customer.export).' },
] as const

/** The places in the order the job runs them: the dedup index before the events it is read from, the audit trail last. */
export function placeOrder(): TenantTable[] {
  const all = Object.keys(PLACES) as TenantTable[]
  // The audit trail last: the entry of the erasure request itself is written as its answer leaves.
  const rank = (t: TenantTable) => (PLACES[t].by === 'dedup' || PLACES[t].by === 'dedupKeys' ? 0 : PLACES[t].by === 'events' ? 1 : PLACES[t].by === 'digest' ? 3 : 2)
  return all.filter((t) => PLACES[t].by !== 'none' && PLACES[t].by !== 'kept').sort((a, b) => rank(a) - rank(b))
}
