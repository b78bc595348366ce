import type { LayoutSnapshot, SnapshotItem, SnapshotModule } from './model.snapshot.js'

/** Hand-made layout snapshots for the ranking and rendering tests: every number set by the test. */

export function item(index: number, id: string, module: string, extra: Partial<SnapshotItem> = {}): SnapshotItem {
  // A hand-made condition affirms every tag it reads unless the test says otherwise.
  return { index, id, module, type: 'service', title: { zh: id, en: id }, deeplink: `app://${id}`, category: id, boost: 0, elder: 'show', conditionTags: [], affirmedTags: extra.conditionTags ?? [], sensitiveTags: [], risk: 0, ...extra }
}

export function snapshot(items: SnapshotItem[], modules: Partial<SnapshotModule>[], extra: Partial<LayoutSnapshot> = {}): LayoutSnapshot {
  const n = items.length
  return {
    tenantId: 1,
    build: '1',
    builtAt: null,
    catalog: { modules: [], items: [], productRules: [], disable: [] },
    catalogVersions: { group: 0, own: 0 },
    items,
    itemIndex: new Map(items.map((i) => [i.id, i.index])),
    modules: modules.map((m, j) => ({ id: `m${j}`, title: { zh: 'm', en: 'm' }, priority: 100 - j, maxItems: 3, elder: 'show', conditionTags: [], affirmedTags: m.conditionTags ?? [], sensitiveTags: [], items: [], ...m })),
    elder: undefined,
    popularity: new Float32Array(n),
    segments: [],
    regions: new Map(),
    model: { name: 'sar', kind: 'sar', input: 'affinity' },
    neighbours: items.map(() => ({ items: new Int32Array(0), sims: new Float32Array(0) })),
    customers: {
      keys: new Uint32Array(0), itemOff: new Uint32Array(1), items: new Int32Array(0), affinity: new Float32Array(0),
      shownOff: new Uint32Array(1), shown: new Int32Array(0), shownToday: new Uint16Array(0), shownWeek: new Uint16Array(0), clickedWeek: new Uint16Array(0),
    },
    index: { hashes: new BigUint64Array(0), keys: new Uint32Array(0) },
    loadedMs: 0,
    bytes: 0,
    ...extra,
  }
}

