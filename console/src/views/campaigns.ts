import { api, enc, get, type ApiError } from '../api.js'
import { zoned } from '../cron.js'
import { clear, fmtInt, h, select } from '../dom.js'
import { issueText, t, tOr } from '../i18n.js'
import { issueLine } from '../issues.js'
import { store } from '../store.js'
import type { Campaign, Schedule } from '../types.js'
import { calendar, preview, ranNote, stats, targets } from './campaign-insights.js'

/**
 * Campaigns: the list, a form to create or change one on a saved segment with its schedule and
 * message, and beside it the filled message for a sample customer, a "run now", the targets,
 * the stats and the calendar of what is scheduled.
 */

interface Draft {
  id: string
  name: string
  purpose: Campaign['purpose']
  channel: string
  priority: string
  segment: string
  status: 'active' | 'paused'
  kind: 'once' | 'cron' | 'active_hour' | 'event'
  onceAt: string
  cron: string
  fallbackHour: number
  eventSchedule: string
  titleZh: string
  titleEn: string
  bodyZh: string
  bodyEn: string
  elderZh: string
  elderEn: string
  controlPerMille: number
  conversionEvents: string
  conversionHours: number
  changeNote: string
  baseVersion: number
}

const CRON_PRESETS: [string, string][] = [
  ['0 10 * * *', 'presetDaily'],
  ['30 9 * * 1-5', 'presetWeekdays'],
  ['0 10 * * 6', 'presetSaturday'],
  ['0 10 1 * *', 'presetMonthly'],
]

const blank = (): Draft => ({
  id: '',
  name: '',
  purpose: 'marketing',
  channel: 'push',
  priority: 'normal',
  segment: '',
  status: 'active',
  kind: 'cron',
  onceAt: '',
  cron: '0 10 * * *',
  fallbackHour: 10,
  eventSchedule: '',
  titleZh: '',
  titleEn: '',
  bodyZh: '{{name}}，您好！',
  bodyEn: 'Hello {{name}}!',
  elderZh: '',
  elderEn: '',
  controlPerMille: 50,
  conversionEvents: '',
  conversionHours: 72,
  changeNote: '',
  baseVersion: 0,
})

let draft: Draft = blank()

function toDraft(c: Campaign, tz: string): Draft {
  const s = c.schedule
  const local = s.kind === 'once' ? new Intl.DateTimeFormat('sv-SE', { timeZone: tz, dateStyle: 'short', timeStyle: 'short' }).format(new Date(s.at)).replace(' ', 'T') : ''
  return {
    ...blank(),
    id: c.id,
    name: c.name,
    purpose: c.purpose,
    channel: c.channel,
    priority: c.priority,
    segment: c.audience.segment ?? '',
    status: c.status === 'paused' ? 'paused' : 'active',
    kind: s.kind,
    onceAt: local,
    cron: s.kind === 'cron' ? s.cron : blank().cron,
    fallbackHour: s.kind === 'active_hour' ? (s.fallbackHour ?? 10) : 10,
    eventSchedule: s.kind === 'event' ? JSON.stringify(s) : '',
    titleZh: c.message.title?.zh ?? '',
    titleEn: c.message.title?.en ?? '',
    bodyZh: c.message.body.zh,
    bodyEn: c.message.body.en,
    elderZh: c.message.elder?.body.zh ?? '',
    elderEn: c.message.elder?.body.en ?? '',
    controlPerMille: c.controlPerMille,
    conversionEvents: c.conversion?.event.names?.join(', ') ?? '',
    conversionHours: c.conversion?.withinHours ?? 72,
    baseVersion: c.version,
  }
}

function toBody(d: Draft, tz: string): Record<string, unknown> {
  let schedule: Schedule
  if (d.kind === 'once') {
    const [day = '', time = '00:00'] = d.onceAt.split('T')
    const [hh = 0, mm = 0] = time.split(':').map(Number)
    schedule = { kind: 'once', at: day ? zoned(day, hh, mm, tz).toISOString() : '' }
  } else if (d.kind === 'cron') schedule = { kind: 'cron', cron: d.cron.trim() }
  else if (d.kind === 'active_hour') schedule = { kind: 'active_hour', fallbackHour: d.fallbackHour }
  else schedule = JSON.parse(d.eventSchedule || '{}') as Schedule
  const events = d.conversionEvents.split(/[,，\s]+/).filter(Boolean)
  return {
    name: d.name || d.id,
    purpose: d.purpose,
    channel: d.channel,
    priority: d.priority,
    status: d.status,
    audience: d.segment ? { segment: d.segment } : { all: true },
    schedule,
    message: {
      ...(d.titleZh || d.titleEn ? { title: { zh: d.titleZh || d.titleEn, en: d.titleEn || d.titleZh } } : {}),
      body: { zh: d.bodyZh, en: d.bodyEn },
      // An elder text left empty in one language falls back to the standard body of that language, not to the other language.
      ...(d.elderZh || d.elderEn ? { elder: { body: { zh: d.elderZh || d.bodyZh, en: d.elderEn || d.bodyEn } } } : {}),
    },
    controlPerMille: d.controlPerMille,
    ...(events.length ? { conversion: { event: { names: events }, withinHours: d.conversionHours } } : {}),
    changeNote: d.changeNote,
  }
}

export async function campaignsView(root: HTMLElement): Promise<void> {
  const tz = store.tenant().timeZone
  const [segments, list] = await Promise.all([store.segments(), get<{ campaigns: Campaign[] }>('/v1/push/campaigns').then((r) => r.campaigns)])
  let campaigns = list
  const listBox = h('aside', { class: 'panel' })
  const formBox = h('section', { class: 'panel' })
  const sideBox = h('section', { class: 'campaign-side' })
  const calendarBox = h('section', { class: 'panel' })

  function drawList() {
    clear(
      listBox,
      h('h3', null, t('campaigns')),
      h('button', { class: 'primary block', 'data-testid': 'new-campaign', onclick: () => ((draft = blank()), drawForm(), drawSide()) }, `+ ${t('newCampaign')}`),
      campaigns.map((c) =>
        h(
          'button',
          { class: `seg-item${c.id === draft.id && draft.baseVersion ? ' on' : ''}`, 'data-campaign': c.id, onclick: () => ((draft = toDraft(c, tz)), drawForm(), drawSide()) },
          h('b', null, c.name),
          h('small', null, `${c.id} · v${c.version} · ${t(`purpose_${c.purpose}`)}${c.status === 'paused' ? ` · ${t('paused')}` : ''}`),
        ),
      ),
    )
    calendar(calendarBox, campaigns, tz)
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

  function scheduleFields(): HTMLElement[] {
    switch (draft.kind) {
      case 'once':
        return [field(t('sendAt'), bind('onceAt', { type: 'datetime-local' }), tz)]
      case 'cron':
        return [
          field(t('cron'), bind('cron', { placeholder: '0 10 * * *' }), t('cronHint')),
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
        field(t('status'), choose('status', [['active', t('active')], ['paused', t('paused')]])),
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
      h(
        'div',
        { class: 'form-grid' },
        field(t('controlPerMille'), bind('controlPerMille', { type: 'number', min: 0, max: 500 })),
        field(t('conversionEvents'), bind('conversionEvents', { placeholder: 'product_viewed' })),
        field(t('conversionHours'), bind('conversionHours', { type: 'number', min: 1, max: 720 })),
        field(t('changeNote'), bind('changeNote')),
      ),
      h(
        'div',
        { class: 'row' },
        h('button', { class: 'primary', 'data-testid': 'save-campaign', onclick: () => void save(status, issues) }, t('saveSchedule')),
        h('button', { 'data-testid': 'reach', title: t('reachHint'), onclick: () => void estimate(reachBox, issues) }, t('reach')),
        status,
      ),
      reachBox,
      issues,
    )
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
      draft = toDraft(out.campaign, tz)
      campaigns = (await get<{ campaigns: Campaign[] }>('/v1/push/campaigns')).campaigns
      drawForm()
      drawList()
      drawSide()
      formBox.querySelector('[data-testid="campaign-status"]')!.textContent = out.changed ? `${t('savedVersion')} ${out.campaign.version}` : t('unchanged')
    } catch (e) {
      const err = e as ApiError
      status.textContent = err.code === 'CONFLICT' ? (draft.baseVersion ? t('conflictChanged') : t('conflictExists')) : issueText(err.message).text
      clear(issues, (err.issues ?? []).map(issueLine))
    }
  }

  function drawSide() {
    const saved = campaigns.find((c) => c.id === draft.id && draft.baseVersion > 0)
    if (!saved) return clear(sideBox, h('div', { class: 'panel muted' }, t('saveToSee')))
    const previewBox = h('div', { class: 'panel' })
    const statsBox = h('div', { class: 'panel' })
    const targetsBox = h('div', { class: 'panel' })
    clear(sideBox, previewBox, statsBox, targetsBox)
    void preview(previewBox, saved, tz)
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
        out.textContent = ranNote.set(saved.id, issueText((e as Error).message).text)
      }
    }
    refresh()
  }

  clear(root, h('div', { class: 'campaigns-layout' }, listBox, h('div', { class: 'campaign-main' }, formBox, calendarBox), sideBox))
  drawList()
  drawForm()
  drawSide()
}
