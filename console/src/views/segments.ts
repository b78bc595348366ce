import { ApiError, api, download, enc, get } from '../api.js'
import { bar, pie } from '../charts.js'
import { clear, debounce, fmtInt, fmtPct, h, select } from '../dom.js'
import { issueText, lang, t } from '../i18n.js'
import { issueLine } from '../issues.js'
import { fromRule, group, incomplete, issuesByNode, toJson, type GroupNode, type NodeIssues } from '../rule-model.js'
import { store } from '../store.js'
import type { Issue, Preview, Purpose, SavedSegment, TagDetail } from '../types.js'
import { historyPanel } from './history.js'
import { createRuleUndo } from './rule-undo.js'
import { archiveRefusal, copyId, keepingFocus, listFilters, listQueryString, type ListQuery } from './list-tools.js'
import { renderRule, showIssues, type EditorCtx } from './rule-editor.js'
import { breakdownTags, tagNamesIn, withRemainder } from './segment-breakdown.js'

/**
 * The segment builder: a rule tree with a live count (POST /v1/segments/preview, 400 ms after the
 * last change, older answers discarded), a breakdown by two tags as charts, save with version
 * history, and the export of the last materialization.
 */

interface Draft {
  id: string
  name: string
  description: string
  purpose: Purpose
  changeNote: string
  root: GroupNode
  /** The version the draft was loaded from; saving checks nobody saved since. 0: a new segment. */
  baseVersion: number
  /** Archived: shown as saved, changed by nothing until restored. */
  archived: boolean
  breakdown: [string, string]
}

const SEGMENT_ID = /^[a-z][a-z0-9_-]{1,62}$/
const fresh = (): Draft => ({ id: '', name: '', description: '', purpose: 'marketing', changeNote: '', root: group('all'), baseVersion: 0, archived: false, breakdown: ['aum_tier', 'lifecycle'] })
// Kept across screens and language switches, so a half-built segment is not lost.
let draft: Draft = fresh()
const listQuery: ListQuery = { q: '', archived: 'exclude' }

export async function segmentsView(root: HTMLElement): Promise<void> {
  const [tags, segments, eventNames] = await Promise.all([store.tags(), store.segments(), store.eventNames()])
  // The default breakdown names banking-pack tags; a tenant without them (the group, a bank with
  // its own tags) starts with no breakdown instead of asking for tags it does not have.
  const known = new Set(tags.map((d) => d.name))
  draft.breakdown = [known.has(draft.breakdown[0]) ? draft.breakdown[0] : '', known.has(draft.breakdown[1]) ? draft.breakdown[1] : '']
  dropForbiddenBreakdown()
  const details = new Map<string, TagDetail>()
  const treeBox = h('div', { class: 'tree-box' })
  const general = h('div', { class: 'general-issues', 'data-testid': 'general-issues' })
  const countPanel = h('div', { class: 'panel count-panel' })
  const savePanel = h('div', { class: 'panel' })
  const purposeBox = h('label', { class: 'purpose' })
  const listBox = h('div', { class: 'seg-list' })
  const filters = listFilters(listQuery, () => void refreshList(), 'seg')
  let nodeIssues: NodeIssues = new Map()
  let last: Preview | null = null
  let seq = 0
  let inflight: AbortController | null = null

  const ctx: EditorCtx = {
    root: draft.root,
    purpose: draft.purpose,
    tags,
    details,
    segments,
    eventNames,
    changed(structure) {
      if (structure) drawTree()
      undo.changed(structure)
      scheduleCount()
    },
    needDetail(name) {
      // An unknown tag (a rule kept from before a sign-in to another tenant) is reported on its
      // node by the preview; there is no detail to fetch.
      if (!known.has(name)) return
      void store.tag(name).then(
        (d) => {
          details.set(name, d)
          drawTree()
        },
        () => undefined,
      )
    },
  }
  for (const name of new Set([...draft.breakdown, ...tagNamesIn(draft.root)])) ctx.needDetail(name)
  const undo = createRuleUndo<{ purpose: Purpose; root: GroupNode }>({
    read: () => ({ purpose: draft.purpose, root: draft.root }),
    write: (st) => {
      Object.assign(draft, st)
      dropForbiddenBreakdown()
      drawTree()
      scheduleCount()
    },
    key: (st) => JSON.stringify([st.purpose, toJson(st.root, 'rule', new Map())]),
    unsavedOnly: () => draft.baseVersion === 0,
  })

  function drawPurpose() {
    clear(
      purposeBox,
      t('purpose'),
      ' ',
      select({ 'data-testid': 'seg-purpose', onchange: (e: Event) => ((draft.purpose = (e.target as HTMLSelectElement).value as Purpose), dropForbiddenBreakdown(), ctx.changed(true)) }, (['marketing', 'service', 'risk', 'security'] as const).map((p): [string, string] => [p, t(`purpose_${p}`)]), draft.purpose),
      h('small', { class: 'muted' }, ` ${t('purposeHint')}`),
    )
  }

  function drawTree() {
    drawPurpose()
    ctx.root = draft.root
    ctx.purpose = draft.purpose
    const focused = document.activeElement as HTMLElement | null
    const focusKey = focused?.closest<HTMLElement>('[data-node]')?.dataset.node
    const focusTest = focused?.dataset.testid
    clear(treeBox, renderRule(ctx))
    if (focusKey && focusTest) treeBox.querySelector<HTMLElement>(`[data-node="${focusKey}"] [data-testid="${focusTest}"]`)?.focus()
    showIssues(treeBox, nodeIssues, incomplete(draft.root))
  }

  const setIssues = (issues: Issue[], paths: Map<string, string>) => {
    nodeIssues = issuesByNode(issues, paths)
    const rest = nodeIssues.get('') ?? []
    clear(general, rest.map(issueLine))
    showIssues(treeBox, nodeIssues, incomplete(draft.root))
  }

  const scheduleCount = debounce(400, () => void count())

  async function count() {
    const pending = incomplete(draft.root)
    const paths = new Map<string, string>()
    const rule = toJson(draft.root, 'rule', paths)
    if (pending.length) {
      setIssues([], paths)
      return drawCount(draft.root.children.length ? 'incomplete' : 'empty')
    }
    const mine = ++seq
    inflight?.abort()
    inflight = new AbortController()
    drawCount('loading')
    try {
      const body = { purpose: draft.purpose, rule, breakdown: draft.breakdown.filter(Boolean), sampleSize: 5 }
      const p = await api<Preview>('POST', '/v1/segments/preview', body, { signal: inflight.signal })
      if (mine !== seq) return
      last = p
      setIssues([], paths)
      drawCount('ready')
    } catch (e) {
      if (mine !== seq || (e as Error).name === 'AbortError') return
      setIssues(e instanceof ApiError ? (e.issues.length ? e.issues : [{ message: e.message }]) : [{ message: String(e) }], paths)
      drawCount('error')
    }
  }

  function drawCount(status: 'ready' | 'loading' | 'error' | 'incomplete' | 'empty') {
    const shown = countPanel.querySelector<HTMLElement>('[data-testid="count-status"]')
    if (status === 'loading' && shown) {
      // Only the state changes while counting: redrawing would make the charts flash.
      shown.dataset.status = status
      shown.className = `count ${status}`
      countPanel.querySelector('.count-note')!.textContent = t('counting')
      return
    }
    const p = status === 'empty' ? null : last
    const offered = breakdownTags(tags, draft.purpose)
    const breakdownSelect = (i: 0 | 1) =>
      select(
        { 'data-testid': `breakdown-${i}`, onchange: (e: Event) => ((draft.breakdown[i] = (e.target as HTMLSelectElement).value), void count()) },
        [['', '—'], ...offered.map((d): [string, string] => [d.name, d.description[lang()]])],
        draft.breakdown[i],
      )
    const charts = draft.breakdown.map((name, i) => {
      const el = h('div', { class: 'chart small', 'data-testid': `breakdown-chart-${i}` })
      const def = tags.find((d) => d.name === name)
      const rows = name && p && def ? withRemainder(def, p.breakdown[name] ?? [], p.count) : []
      if (!rows.length) return null
      requestAnimationFrame(() => (rows.length > 4 ? bar(el, rows.map((r) => r.label), [{ name: def!.description[lang()], data: rows.map((r) => r.customers) }], { horizontal: true, integer: true, labels: true }) : pie(el, rows.map((r) => ({ name: r.label, value: r.customers })))))
      return el
    })
    clear(
      countPanel,
      h('h3', null, t('liveCount')),
      h(
        'div',
        { class: `count ${status}`, 'data-testid': 'count-status', 'data-status': status },
        h('span', { class: 'big', 'data-testid': 'count' }, p ? fmtInt(p.count) : '—'),
        h('span', { class: 'muted' }, p ? ` / ${fmtInt(p.total)} · ${fmtPct(p.share)}` : ''),
      ),
      h('div', { class: 'share-bar' }, h('div', { style: `width:${((p?.share ?? 0) * 100).toFixed(1)}%` })),
      h('div', { class: 'muted small count-note' }, status === 'loading' ? t('counting') : status === 'incomplete' ? t('incompleteCount') : status === 'empty' ? t('emptyCount') : status === 'error' ? t('ruleHasErrors') : p ? `${t(`executor_${p.executor}`)} · ${p.ms} ${t('ms')}` : ''),
      general,
      h('h4', null, t('breakdownBy')),
      // A tenant with no tag to break down by (the group) is told so rather than shown empty lists.
      offered.length ? [h('div', { class: 'row' }, breakdownSelect(0), breakdownSelect(1)), charts] : h('p', { class: 'muted small', 'data-testid': 'no-breakdown-tags' }, t('noBreakdownTags')),
      p?.sample.length ? h('div', { class: 'sample' }, h('h4', null, t('sample')), p.sample.map((c) => h('a', { href: `#/layout?customer=${enc(c)}`, class: 'pill' }, c))) : null,
    )
  }

  /** A breakdown tag the purpose may not use would put the whole count in error: it is dropped. */
  function dropForbiddenBreakdown() {
    const allowed = new Set(breakdownTags(tags, draft.purpose).map((d) => d.name))
    draft.breakdown = draft.breakdown.map((n) => (allowed.has(n) ? n : '')) as [string, string]
  }

  function drawSave(versions: SavedSegment[] = []) {
    const field = (key: 'id' | 'name' | 'description' | 'changeNote', label: string, attrs: Record<string, string | boolean> = {}) =>
      h('label', { class: 'field' }, h('span', null, label), h('input', { ...attrs, value: draft[key], 'data-testid': `seg-${key}`, oninput: (e: Event) => (draft[key] = (e.target as HTMLInputElement).value) }))
    const status = h('div', { class: 'status', 'data-testid': 'save-status' })
    const saved = draft.baseVersion > 0
    clear(
      savePanel,
      h('h3', null, saved ? `${t('segment')} ${draft.id} · v${draft.baseVersion}` : t('newSegment')),
      h(
        'div',
        { class: 'form-grid' },
        field('id', t('segmentId'), { placeholder: 'rich-elders', disabled: saved }),
        field('name', t('name')),
        field('description', t('description')),
        field('changeNote', t('changeNote')),
      ),
      draft.archived ? h('p', { class: 'hint', 'data-testid': 'archived-note' }, t('archivedNote')) : null,
      h(
        'div',
        { class: 'row' },
        h('button', { class: 'primary', 'data-testid': 'save', disabled: draft.archived, onclick: () => void save(status) }, t('save')),
        saved ? h('button', { 'data-testid': 'export', onclick: () => void exportCsv(status) }, t('exportCsv')) : null,
        saved ? h('button', { 'data-testid': 'materialize', disabled: draft.archived, onclick: () => void materialize(status) }, t('materialize')) : null,
        status,
      ),
      saved
        ? h(
            'div',
            { class: 'row' },
            h('button', { 'data-testid': 'seg-duplicate', title: t('duplicateHint'), onclick: () => void duplicate(status) }, t('duplicate')),
            h('button', { 'data-testid': 'seg-save-as', title: t('saveAsHint'), onclick: () => saveAs() }, t('saveAs')),
            h('button', { 'data-testid': 'seg-archive', onclick: () => void setArchived(!draft.archived, status) }, draft.archived ? t('restore') : t('archive')),
          )
        : null,
      versions.length ? historyPanel(versions, { timeZone: store.tenant().timeZone, load: loadVersion }) : null,
    )
  }

  async function save(status: HTMLElement) {
    if (!SEGMENT_ID.test(draft.id)) return void (status.textContent = t('badSegmentId'))
    const paths = new Map<string, string>()
    const body = { name: draft.name || draft.id, description: draft.description, purpose: draft.purpose, rule: toJson(draft.root, 'rule', paths), changeNote: draft.changeNote }
    status.textContent = t('saving')
    try {
      const out = await api<{ segment: SavedSegment; changed: boolean }>('PUT', `/v1/segments/${enc(draft.id)}?expectedVersion=${draft.baseVersion}`, body)
      draft.baseVersion = out.segment.version
      undo.saved()
      draft.changeNote = ''
      store.segmentsChanged()
      await refreshList()
      await loadVersions()
      savePanel.querySelector('[data-testid="save-status"]')!.textContent = out.changed ? `${t('savedVersion')} ${out.segment.version}` : t('unchanged')
    } catch (e) {
      const err = e as ApiError
      if (err.code === 'CONFLICT') status.textContent = draft.baseVersion ? t('conflictChanged') : t('conflictExists')
      else if (err.issues?.length) {
        setIssues(err.issues, paths)
        status.textContent = t('ruleHasErrors')
      } else status.textContent = err.message
    }
  }

  /** A copy of the saved version under a free id, saved at once and opened. */
  async function duplicate(status: HTMLElement) {
    status.textContent = t('saving')
    try {
      const s = await get<SavedSegment>(`/v1/segments/${enc(draft.id)}`)
      const all = await get<{ segments: SavedSegment[] }>('/v1/segments?archived=include')
      const id = copyId(s.id, all.segments.map((x) => x.id))
      const body = { name: `${s.name}${t('copySuffix')}`, description: s.description, purpose: s.purpose, rule: s.rule, schedule: s.schedule, changeNote: `${t('copyOf')} ${s.id} v${s.version}` }
      const out = await api<{ segment: SavedSegment }>('PUT', `/v1/segments/${enc(id)}?expectedVersion=0`, body)
      store.segmentsChanged()
      await open(out.segment)
      savePanel.querySelector('[data-testid="save-status"]')!.textContent = `${t('duplicated')} ${id}`
    } catch (e) {
      status.textContent = issueText((e as Error).message).text
    }
  }

  /** The rule as it is in the editor (changes included) becomes a new, unsaved segment to name. */
  function saveAs() {
    const from = draft.id
    Object.assign(draft, { id: '', name: `${draft.name}${t('copySuffix')}`, baseVersion: 0, archived: false, changeNote: `${t('copyOf')} ${from}` })
    drawSave()
    void refreshList()
    savePanel.querySelector<HTMLInputElement>('[data-testid="seg-id"]')?.focus()
  }

  async function setArchived(archived: boolean, status: HTMLElement) {
    status.textContent = t('saving')
    try {
      const out = await api<{ segment: SavedSegment }>('PUT', `/v1/segments/${enc(draft.id)}/archived`, { archived, changeNote: archived ? t('archivedTag') : t('restoredNote') })
      Object.assign(draft, { baseVersion: out.segment.version, archived: out.segment.archived })
      store.segmentsChanged()
      await refreshList()
      await loadVersions()
      savePanel.querySelector('[data-testid="save-status"]')!.textContent = archived ? t('archivedDone') : t('restoredDone')
    } catch (e) {
      clear(status, archiveRefusal(e))
    }
  }

  async function exportCsv(status: HTMLElement) {
    status.textContent = ''
    try {
      await download(`/v1/segments/${enc(draft.id)}/export?format=csv`, `${draft.id}.csv`)
    } catch (e) {
      // 404: the segment was saved but has no list yet (it is made by a materialization).
      status.textContent = e instanceof ApiError && e.status === 404 ? t('exportFirst') : (e as Error).message
    }
  }

  async function materialize(status: HTMLElement) {
    status.textContent = t('materializing')
    try {
      await api('POST', '/v1/pipelines/runs', { pipeline: 'segments', wait: true })
      const runs = await get<{ runs: { size: number }[] }>(`/v1/segments/${enc(draft.id)}/runs?limit=1`)
      status.textContent = `${t('materialized')}: ${fmtInt(runs.runs[0]?.size ?? 0)}`
    } catch (e) {
      status.textContent = (e as Error).message
    }
  }

  async function loadVersions() {
    if (!draft.baseVersion) return drawSave()
    const { versions } = await get<{ versions: SavedSegment[] }>(`/v1/segments/${enc(draft.id)}/versions`)
    drawSave(versions)
  }

  function loadVersion(v: SavedSegment) {
    // The draft keeps the latest version as its base: saving an old version makes it the newest.
    Object.assign(draft, { name: v.name, description: v.description, purpose: v.purpose, root: fromRule(v.rule), changeNote: `${t('restoreOf')} v${v.version}` })
    for (const name of tagNamesIn(draft.root)) ctx.needDetail(name)
    drawTree()
    // Loading an old version is a change of the rule like any other: unsaved, and undone by undo.
    undo.changed(true)
    void loadVersions()
    void count()
  }

  async function open(s: SavedSegment | null) {
    draft = s ? { ...fresh(), id: s.id, name: s.name, description: s.description, purpose: s.purpose, root: fromRule(s.rule), baseVersion: s.version, archived: s.archived, breakdown: draft.breakdown } : { ...fresh(), breakdown: draft.breakdown }
    nodeIssues = new Map()
    for (const name of tagNamesIn(draft.root)) ctx.needDetail(name)
    drawTree()
    undo.reset()
    await loadVersions()
    await refreshList()
    void count()
  }

  let listSeq = 0
  async function refreshList() {
    ctx.segments = await store.segments()
    const mine = ++listSeq
    const list = (await get<{ segments: SavedSegment[] }>(`/v1/segments${listQueryString(listQuery)}`)).segments
    // A slower answer to an earlier search does not replace a newer one.
    if (mine !== listSeq) return
    keepingFocus(filters, () => clear(
      listBox,
      h('button', { class: 'primary block', 'data-testid': 'new-segment', onclick: () => void open(null) }, `+ ${t('newSegment')}`),
      filters,
      list.map((s) =>
        h(
          'button',
          { class: `seg-item${s.id === draft.id && draft.baseVersion ? ' on' : ''}${s.archived ? ' archived' : ''}`, 'data-segment': s.id, onclick: () => void open(s) },
          h('b', null, s.name),
          h('small', null, h('span', { translate: 'no' }, s.id), ` · v${s.version} · ${t(`purpose_${s.purpose}`)}${s.archived ? ` · ${t('archivedTag')}` : ''}`),
        ),
      ),
      list.length ? null : h('p', { class: 'muted small', 'data-testid': 'seg-list-empty' }, t('noListMatch')),
    ))
  }

  clear(
    root,
    h(
      'div',
      { class: 'segments-layout' },
      h('aside', { class: 'panel' }, h('h3', null, t('savedSegments')), listBox),
      h('section', { class: 'editor' }, h('div', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h3', null, t('rule')), undo.marker, undo.button, purposeBox), treeBox), savePanel),
      countPanel,
    ),
  )
  drawTree()
  // A draft kept from another screen is compared with its saved version (a new one with an empty rule).
  undo.reset(false)
  const savedOne = draft.baseVersion ? segments.find((x) => x.id === draft.id) : undefined
  undo.setBaseline(savedOne ? { purpose: savedOne.purpose, root: fromRule(savedOne.rule) } : { purpose: draft.purpose, root: group('all') })
  drawCount('empty')
  await Promise.all([refreshList(), loadVersions()])
  void count()
}
