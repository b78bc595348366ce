import { api, enc, get, type ApiError } from '../api.js'
import { clear, fmtInt, h, select } from '../dom.js'
import { describeCron, issueText, t, tOr } from '../i18n.js'
import { issueLine } from '../issues.js'
import { store } from '../store.js'
import type { Campaign } from '../types.js'
import { calendar, preview, ranNote, stats, targets } from './campaign-insights.js'
import { blank, CRON_PRESETS, toBody, toDraft, type Draft } from './campaign-draft.js'
import { approvalPanel, testSendPanel } from './campaign-approval.js'
import { splitText, variantEditor } from './campaign-variants.js'
import { historyPanel } from './history.js'
import { archiveRefusal, copyId, keepingFocus, listFilters, listQueryString, type ListQuery } from './list-tools.js'

/**
 * Campaigns: the list, a form to create or change one on a saved segment with its schedule and
 * message, and beside it the filled message for a sample customer, a "run now", the targets,
 * the stats and the calendar of what is scheduled.
 */

let draft: Draft = blank()
/** The saved campaign the form was opened from (or last saved as). */
let opened: Campaign | null = null
const listQuery: ListQuery = { q: '', archived: 'exclude' }

export async function campaignsView(root: HTMLElement): Promise<void> {
  const tz = store.tenant().timeZone
  const listed = () => get<{ campaigns: Campaign[] }>(`/v1/push/campaigns${listQueryString(listQuery)}`).then((r) => r.campaigns)
  const [segments, list, live] = await Promise.all([store.segments(), listed(), get<{ campaigns: Campaign[] }>('/v1/push/campaigns').then((r) => r.campaigns)])
  // The list as searched and filtered; the calendar shows every campaign not archived.
  let campaigns = list
  let calendarCampaigns = live
  const filters = listFilters(listQuery, () => void reload(), 'campaign')
  let listSeq = 0
  async function reload() {
    const mine = ++listSeq
    const got = await Promise.all([listed(), get<{ campaigns: Campaign[] }>('/v1/push/campaigns').then((r) => r.campaigns)])
    // A slower answer to an earlier search does not replace a newer one.
    if (mine !== listSeq) return
    ;[campaigns, calendarCampaigns] = got
    drawList()
  }
  const listBox = h('aside', { class: 'panel' })
  const formBox = h('section', { class: 'panel' })
  const sideBox = h('section', { class: 'campaign-side' })
  const calendarBox = h('section', { class: 'panel' })

  function drawList() {
    keepingFocus(filters, () => drawListNow())
    void calendar(calendarBox, calendarCampaigns, tz)
  }
  function drawListNow() {
    clear(
      listBox,
      h('h3', null, t('campaigns')),
      h('button', { class: 'primary block', 'data-testid': 'new-campaign', onclick: () => ((draft = blank()), drawForm(), drawSide()) }, `+ ${t('newCampaign')}`),
      filters,
      campaigns.map((c) =>
        h(
          'button',
          { class: `seg-item${c.id === draft.id && draft.baseVersion ? ' on' : ''}${c.status === 'archived' ? ' archived' : ''}`, 'data-campaign': c.id, onclick: () => ((draft = toDraft((opened = c), tz)), drawForm(), drawSide()) },
          h('b', null, c.name),
          h('small', null, h('span', { translate: 'no' }, c.id), ` · v${c.version} · ${t(`purpose_${c.purpose}`)}${c.variants ? ` · ${t('splitOf')} ${splitText(c)}` : ''}${c.status === 'paused' ? ` · ${t('paused')}` : c.status === 'archived' ? ` · ${t('archivedTag')}` : ''}`),
        ),
      ),
      campaigns.length ? null : h('p', { class: 'muted small', 'data-testid': 'campaign-list-empty' }, t('noListMatch')),
    )
  }

  const bind = <K extends keyof Draft>(key: K, attrs: Record<string, string | number | boolean> = {}) =>
    h(attrs.rows ? 'textarea' : 'input', {
      ...attrs,
      value: String(draft[key]),
      'data-testid': `c-${key}`,
      oninput: (e: Event) => {
        const v = (e.target as HTMLInputElement).value
        ;(draft as unknown as Record<string, unknown>)[key] = typeof draft[key] === 'number' ? Number(v) : v
      },
    })
  const choose = <K extends keyof Draft>(key: K, options: [string, string][], redraw = false) =>
    select({ 'data-testid': `c-${key}`, onchange: (e: Event) => (((draft as unknown as Record<string, unknown>)[key] = (e.target as HTMLSelectElement).value), redraw && drawForm()) }, options, String(draft[key]))
  const field = (label: string, control: HTMLElement, hint?: string) => h('label', { class: 'field' }, h('span', null, label), control, hint ? h('small', { class: 'muted' }, hint) : null)

  /** The cron with, under it, what it means as a sentence, following the typing. */
  function cronField(): HTMLElement {
    const said = h('small', { class: 'muted', 'data-testid': 'cron-sentence' })
    const say = () => (said.textContent = describeCron(draft.cron) ?? t('cronHint'))
    const input = bind('cron', { placeholder: '0 10 * * *' })
    input.addEventListener('input', say)
    say()
    return h('label', { class: 'field' }, h('span', null, t('cron')), input, said)
  }

  function scheduleFields(): HTMLElement[] {
    switch (draft.kind) {
      case 'once':
        return [field(t('sendAt'), bind('onceAt', { type: 'datetime-local' }), tz)]
      case 'cron':
        return [
          cronField(),
          field(t('presets'), select({ onchange: (e: Event) => ((draft.cron = (e.target as HTMLSelectElement).value || draft.cron), drawForm()) }, [['', '…'], ...CRON_PRESETS.map(([c, k]): [string, string] => [c, t(k as Parameters<typeof t>[0])])], '')),
        ]
      case 'active_hour':
        return [field(t('fallbackHour'), bind('fallbackHour', { type: 'number', min: 0, max: 23 }), t('activeHourHint'))]
      case 'event':
        return [field(t('eventSchedule'), bind('eventSchedule', { rows: 3 }))]
    }
  }

  function drawForm() {
    const status = h('div', { class: 'status', 'data-testid': 'campaign-status' })
    const issues = h('div', { class: 'general-issues', 'data-testid': 'campaign-issues' })
    const saved = draft.baseVersion > 0
    const reachBox = h('div', { class: 'reach', 'data-testid': 'reach-result' })
    const historyBox = h('div')
    clear(
      formBox,
      h('h3', null, saved ? `${t('campaign')} ${draft.id} · v${draft.baseVersion}` : t('newCampaign')),
      h(
        'div',
        { class: 'form-grid' },
        field(t('campaignId'), bind('id', { placeholder: 'elder-wealth', disabled: saved })),
        field(t('name'), bind('name')),
        field(t('audience'), choose('segment', [['', t('everyone')], ...segments.map((s): [string, string] => [s.id, `${s.name} (${s.id})`])])),
        field(t('purpose'), choose('purpose', (['marketing', 'service', 'security'] as const).map((p): [string, string] => [p, t(`purpose_${p}`)]))),
        field(t('channel'), choose('channel', (['push', 'sms', 'in_app'] as const).map((c): [string, string] => [c, t(`channel_${c}`)]))),
        field(t('priority'), choose('priority', (['low', 'normal', 'high', 'critical'] as const).map((p): [string, string] => [p, t(`prio_${p}`)]))),
        field(t('scheduleKind'), choose('kind', (['cron', 'once', 'active_hour', 'event'] as const).map((k): [string, string] => [k, t(`sched_${k}`)]), true)),
        ...scheduleFields(),
        // An archived campaign's status is said as such (its form cannot be saved until it is restored).
        field(t('status'), draft.archived ? select({ 'data-testid': 'c-status', disabled: true }, [['archived', t('archivedTag')]], 'archived') : choose('status', [['active', t('active')], ['paused', t('paused')]])),
      ),
      h('h4', null, t('message'), ' ', h('small', { class: 'muted', translate: 'no' }, t('placeholdersHint'))),
      h(
        'div',
        { class: 'form-grid two' },
        field(t('titleZh'), bind('titleZh')),
        field(t('titleEn'), bind('titleEn')),
        field(t('bodyZh'), bind('bodyZh', { rows: 2 })),
        field(t('bodyEn'), bind('bodyEn', { rows: 2 })),
        field(t('elderZh'), bind('elderZh', { rows: 2 })),
        field(t('elderEn'), bind('elderEn', { rows: 2 })),
      ),
      variantEditor(draft, drawForm),
      h(
        'div',
        { class: 'form-grid' },
        field(t('controlPerMille'), bind('controlPerMille', { type: 'number', min: 0, max: 500 })),
        field(t('conversionEvents'), bind('conversionEvents', { placeholder: 'product_viewed' })),
        field(t('conversionHours'), bind('conversionHours', { type: 'number', min: 1, max: 720 })),
        field(t('changeNote'), bind('changeNote')),
      ),
      draft.archived ? h('p', { class: 'hint', 'data-testid': 'archived-note' }, t('archivedCampaignNote')) : null,
      h(
        'div',
        { class: 'row' },
        h('button', { class: 'primary', 'data-testid': 'save-campaign', disabled: draft.archived, onclick: () => void save(status, issues) }, t('saveSchedule')),
        h('button', { 'data-testid': 'reach', title: t('reachHint'), onclick: () => void estimate(reachBox, issues) }, t('reach')),
        status,
      ),
      saved
        ? h(
            'div',
            { class: 'row' },
            h('button', { 'data-testid': 'campaign-duplicate', title: t('duplicateCampaignHint'), onclick: () => void duplicate(status) }, t('duplicate')),
            h('button', { 'data-testid': 'campaign-save-as', title: t('saveAsHint'), onclick: () => saveAs() }, t('saveAs')),
            h('button', { 'data-testid': 'campaign-archive', onclick: () => void setArchived(!draft.archived, status) }, draft.archived ? t('restore') : t('archive')),
          )
        : null,
      reachBox,
      issues,
      historyBox,
    )
    if (saved) void drawHistory(historyBox)
  }

  /** Who changed the campaign and what, version against version; an old version loads into the form. */
  async function drawHistory(box: HTMLElement) {
    const id = draft.id
    const { versions } = await get<{ versions: Campaign[] }>(`/v1/push/campaigns/${enc(id)}/versions`)
    if (id !== draft.id) return
    clear(
      box,
      historyPanel(versions, {
        timeZone: tz,
        open: false,
        testid: 'campaign-history',
        load: (v) => {
          // The form keeps the latest version as its base: saving the old one makes it the newest.
          draft = { ...toDraft(v, tz), baseVersion: draft.baseVersion, archived: draft.archived, changeNote: `${t('restoreOf')} v${v.version}` }
          drawForm()
        },
      }),
    )
  }

  /** A copy of the saved version under a free id, paused (so it sends nothing until someone resumes it), opened. */
  async function duplicate(status: HTMLElement) {
    status.textContent = t('saving')
    try {
      const c = await get<Campaign>(`/v1/push/campaigns/${enc(draft.id)}`)
      const all = await get<{ campaigns: Campaign[] }>('/v1/push/campaigns?archived=include')
      const id = copyId(c.id, all.campaigns.map((x) => x.id))
      const { id: _i, version: _v, status: _s, createdBy: _b, createdAt: _a, changeNote: _n, ...def } = c
      const body = { ...def, name: `${c.name}${t('copySuffix')}`, status: 'paused', changeNote: `${t('copyOf')} ${c.id} v${c.version}` }
      const out = await api<{ campaign: Campaign }>('PUT', `/v1/push/campaigns/${enc(id)}?expectedVersion=0`, body)
      draft = toDraft((opened = out.campaign), tz)
      await reload()
      drawForm()
      drawSide()
      formBox.querySelector('[data-testid="campaign-status"]')!.textContent = `${t('duplicated')} ${id}`
    } catch (e) {
      status.textContent = issueText((e as Error).message).text
    }
  }

  /** The form as it is (changes included) becomes a new, unsaved campaign to name. */
  function saveAs() {
    const from = draft.id
    Object.assign(draft, { id: '', name: `${draft.name}${t('copySuffix')}`, baseVersion: 0, archived: false, status: 'paused', changeNote: `${t('copyOf')} ${from}` })
    drawForm()
    drawSide()
    drawList()
    formBox.querySelector<HTMLInputElement>('[data-testid="c-id"]')?.focus()
  }

  async function setArchived(archived: boolean, status: HTMLElement) {
    status.textContent = t('saving')
    try {
      const out = await api<{ campaign: Campaign }>('PUT', `/v1/push/campaigns/${enc(draft.id)}/archived`, { archived, changeNote: archived ? t('archivedTag') : t('restoredNote') })
      draft = toDraft((opened = out.campaign), tz)
      await reload()
      drawForm()
      drawSide()
      formBox.querySelector('[data-testid="campaign-status"]')!.textContent = archived ? t('archivedDone') : t('restoredCampaign')
    } catch (e) {
      clear(status, archiveRefusal(e))
    }
  }

  /** Reach before sending: the form as filled in, counted by the server's targeting without writing. */
  async function estimate(box: HTMLElement, issues: HTMLElement) {
    clear(issues)
    let body: Record<string, unknown>
    try {
      body = toBody(draft, tz)
    } catch {
      return void (box.textContent = t('badEventSchedule'))
    }
    clear(box, h('span', { class: 'muted' }, t('counting')))
    try {
      const id = /^[a-z][a-z0-9_-]{1,62}$/.test(draft.id) ? draft.id : 'new-campaign'
      const r = await api<{ asIfToday: boolean; audience: number; reached: number; suppressed: Record<string, number> }>('POST', `/v1/push/campaigns/${enc(id)}/reach`, body)
      const left = Object.entries(r.suppressed).filter(([, n]) => n > 0)
      clear(
        box,
        h('p', null, `${t('reachWould')} `, h('b', { 'data-testid': 'reach-count' }, fmtInt(r.reached)), ` · ${t('reachAudience')} ${fmtInt(r.audience)}`),
        left.length ? h('p', { class: 'small muted' }, `${t('reachLeftOut')}：${left.map(([k, n]) => `${tOr(`reason_${k}`, k)} ${fmtInt(n)}`).join('、')}`) : null,
        r.asIfToday ? h('p', { class: 'hint', 'data-testid': 'reach-as-if-today' }, t('reachAsIfToday')) : null,
      )
    } catch (e) {
      const err = e as ApiError
      clear(box, h('span', { class: 'issue' }, issueText(err.message).text))
      clear(issues, (err.issues ?? []).map(issueLine))
    }
  }

  async function save(status: HTMLElement, issues: HTMLElement) {
    clear(issues)
    let body: Record<string, unknown>
    try {
      body = toBody(draft, tz)
    } catch {
      status.textContent = t('badEventSchedule')
      return
    }
    status.textContent = t('saving')
    try {
      const out = await api<{ campaign: Campaign; changed: boolean }>('PUT', `/v1/push/campaigns/${enc(draft.id)}?expectedVersion=${draft.baseVersion}`, body)
      draft = toDraft((opened = out.campaign), tz)
      await reload()
      drawForm()
      drawSide()
      formBox.querySelector('[data-testid="campaign-status"]')!.textContent = out.changed ? `${t('savedVersion')} ${out.campaign.version}` : t('unchanged')
    } catch (e) {
      const err = e as ApiError
      status.textContent = err.code === 'CONFLICT' ? (draft.baseVersion ? t('conflictChanged') : t('conflictExists')) : issueText(err.message).text
      clear(issues, (err.issues ?? []).map(issueLine))
    }
  }

  function drawSide() {
    // The campaign opened may be outside the list as now filtered (just archived, say).
    const saved = draft.baseVersion > 0 ? [opened, ...campaigns, ...calendarCampaigns].find((c) => c?.id === draft.id) : undefined
    if (!saved) return clear(sideBox, h('div', { class: 'panel muted' }, t('saveToSee')))
    const previewBox = h('div', { class: 'panel' })
    const statsBox = h('div', { class: 'panel' })
    const targetsBox = h('div', { class: 'panel' })
    const approvalBox = h('div', { class: 'panel', 'data-testid': 'approval-panel' })
    const testBox = h('div', { class: 'panel', 'data-testid': 'test-send-panel' })
    clear(sideBox, approvalBox, testBox, previewBox, statsBox, targetsBox)
    const approvals = () => void approvalPanel(approvalBox, saved, approvals)
    approvals()
    void testSendPanel(testBox, saved)
    void preview(previewBox, saved)
    const refresh = () => (void stats(statsBox, saved), void targets(targetsBox, saved, tz, run))
    // The answer is kept (ranNote) so the refresh of the panels that follows does not erase it.
    const run = async (out: HTMLElement) => {
      out.textContent = t('running')
      try {
        const r = await api<{ campaigns: { skipped?: string; targeted: number; queued: number; suppressed: Record<string, number> }[] }>('POST', `/v1/push/campaigns/${enc(saved.id)}/run`, {})
        const c = r.campaigns[0]
        const left = Object.values(c?.suppressed ?? {}).reduce((a, n) => a + n, 0)
        out.textContent = ranNote.set(
          saved.id,
          c?.skipped
            ? tOr(`skipped_${c.skipped}`, `${t('skipped')}: ${c.skipped}`)
            : `${t('ranResult')}：${t('targeted')} ${fmtInt(c?.targeted ?? 0)} · ${t('queued')} ${fmtInt(c?.queued ?? 0)} · ${t('notSent')} ${fmtInt(left)}`,
        )
        refresh()
      } catch (e) {
        out.textContent = ranNote.set(saved.id, (e as ApiError).code === 'NOT_APPROVED' ? t('apiError_NOT_APPROVED') : issueText((e as Error).message).text)
      }
    }
    refresh()
  }

  clear(root, h('div', { class: 'campaigns-layout' }, listBox, h('div', { class: 'campaign-main' }, formBox, calendarBox), sideBox))
  drawList()
  drawForm()
  drawSide()
}
