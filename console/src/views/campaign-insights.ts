import { ApiError, api, enc, get } from '../api.js'
import { PALETTE, bar, pie } from '../charts.js'
import { cronsOf, occurrences, type Runs } from '../calendar.js'
import { clear, fmtInt, fmtPct, fmtTime, h, select } from '../dom.js'
import { lang, t, tf, tOr } from '../i18n.js'
import type { Campaign, CampaignStats, Preview, SchedulePreview, Target, TemplatePreview, TemplatePreviewRequest } from '../types.js'
import { addDays, localDay } from '../zone.js'
import { messagesOf, variantResults } from './campaign-variants.js'

/** The panels beside a campaign: its message for a sample customer, stats, targets, and the calendar. */

/** What the last "run now" of a campaign answered: the panels are drawn again after a run and keep it. */
let lastRun = { campaign: '', note: '' }
export const ranNote = {
  set: (campaign: string, note: string) => ((lastRun = { campaign, note }), note),
  of: (campaign: string) => (lastRun.campaign === campaign ? lastRun.note : ''),
}

let sampleCustomer = ''
/** The campaign the sample was drawn for: another campaign has another audience. */
let sampleFor = ''

/**
 * The message as a sample customer of the audience would get it, filled by the server as
 * targeting fills it (POST /v1/push/templates/preview: variant, language, stock data; C2 values
 * masked for a key without personal:read); the sample comes from a preview of the campaign's segment.
 */
export async function preview(box: HTMLElement, c: Campaign): Promise<void> {
  const input = h('input', { value: sampleCustomer, placeholder: '8101…', 'data-testid': 'sample-customer' })
  const out = h('div', { class: 'message-preview', 'data-testid': 'message-preview' })
  const messages = messagesOf(c)
  // A campaign with variants previews the one chosen (the baseline first).
  const which = select({ 'data-testid': 'preview-variant', onchange: () => void show() }, messages.map((m): [string, string] => [m.id, tf('variantName', { id: m.id })]), messages[0]?.id ?? '')
  const show = async () => {
    sampleCustomer = input.value.trim()
    if (!sampleCustomer) return clear(out, h('p', { class: 'muted' }, t('noSample')))
    try {
      const message = (messages.find((m) => m.id === which.value) ?? messages[0])?.message
      if (!message) return
      const body: TemplatePreviewRequest = { message, customerNo: sampleCustomer }
      const p = await api<TemplatePreview>('POST', '/v1/push/templates/preview', body)
      const filled = p.texts[lang()]
      // A field without a value and without a fallback: targeting would leave this customer out.
      const missing = p.fields.filter((f) => f.value === null).map((f) => f.field)
      clear(
        out,
        h('div', { class: 'notification' }, h('div', { class: 'app' }, t('appName'), h('span', null, t('now'))), filled.title ? h('b', null, filled.title) : null, h('p', { 'data-testid': 'filled-body' }, filled.body ?? '—')),
        h('p', { class: 'muted small' }, `${p.customerNo ?? sampleCustomer} · ${p.elder ? t('elderVariant') : t('standardVariant')}`),
        filled.body === null && missing.length ? h('p', { class: 'hint', 'data-testid': 'missing-fields' }, `${t('reason_missing_field')}: ${missing.join(', ')}`) : null,
      )
    } catch (e) {
      clear(out, h('p', { class: 'issue' }, (e as Error).message))
    }
  }
  clear(
    box,
    h('h3', null, t('messagePreview')),
    messages.length > 1 ? h('label', { class: 'field' }, h('span', null, t('previewVariant')), which) : null,
    h('div', { class: 'row' }, input, h('button', { onclick: () => void show() }, t('fill'))),
    out,
  )
  if (sampleFor !== c.id) {
    sampleFor = c.id
    sampleCustomer = ''
    input.value = ''
  }
  if (!sampleCustomer && c.audience.segment) {
    try {
      const p = await api<Preview>('POST', `/v1/segments/${enc(c.audience.segment)}/preview`, { breakdown: [], sampleSize: 1 })
      sampleCustomer = p.sample[0] ?? ''
      input.value = sampleCustomer
    } catch (e) {
      if (!(e instanceof ApiError)) throw e
    }
  }
  await show()
}

export async function stats(box: HTMLElement, c: Campaign): Promise<void> {
  const s = await get<CampaignStats>(`/v1/push/campaigns/${enc(c.id)}/stats`)
  const funnel = h('div', { class: 'chart small', 'data-testid': 'funnel-chart' })
  const reasons = h('div', { class: 'chart small', 'data-testid': 'suppression-chart' })
  const uplift = h('div', { class: 'chart small', 'data-testid': 'uplift-chart' })
  const suppressed = Object.entries(s.suppressed).filter(([, n]) => n > 0)
  const conv = s.conversion
  clear(
    box,
    h('h3', null, t('stats')),
    h('div', { class: 'kpis' }, [
      [t('targeted'), fmtInt(s.targeted)],
      [t('queued'), fmtInt(s.queued)],
      [t('sent'), fmtInt(s.sent)],
      [t('opened'), fmtInt(s.opened)],
    ].map(([k, v]) => h('div', { class: 'kpi' }, h('b', null, v), h('small', null, k)))),
    s.targeted ? funnel : h('p', { class: 'muted' }, t('noTargetsYet')),
    h('h4', null, t('suppressionReasons')),
    suppressed.length ? reasons : h('p', { class: 'muted' }, '—'),
    h('h4', null, t('upliftTitle')),
    conv
      ? [
          h('p', { class: 'small' }, `${t('upliftVsHoldout')}: `, h('b', null, fmtPct(conv.upliftVsHoldout, 2)), ` · ${t('upliftVsControl')}: `, h('b', null, fmtPct(conv.upliftVsControl, 2)), ' · ', h('span', { translate: 'no' }, conv.event.join(', ')), ` / ${conv.withinHours} ${t('hours')}`),
          uplift,
        ]
      : h('p', { class: 'muted' }, t('noConversionGoal')),
    variantResults(s.variants),
  )
  requestAnimationFrame(() => {
    if (s.targeted) {
      const steps: [string, number][] = [[t('targeted'), s.targeted], [t('queued'), s.queued], [t('sent'), s.sent], [t('delivered'), s.delivered], [t('opened'), s.opened], [t('clicked'), s.clicked]]
      bar(funnel, steps.map(([k]) => k), [{ name: t('customers'), data: steps.map(([, v]) => v) }], { integer: true, labels: true })
    }
    if (suppressed.length) pie(reasons, suppressed.map(([k, v]) => ({ name: tOr(`reason_${k}`, k), value: v })))
    if (conv) {
      const g = conv.groups
      const rows: [string, typeof g.treated][] = [[t('treated'), g.treated], [t('holdout'), g.holdout], [t('control'), g.control]]
      bar(uplift, rows.map(([k, x]) => `${k} (${fmtInt(x.customers)})`), [{ name: t('conversionRate'), data: rows.map(([, x], i) => ({ value: x.rate ?? 0, itemStyle: { color: PALETTE[i]! } })) }], { percent: true, labels: true })
    }
  })
}

export async function targets(box: HTMLElement, c: Campaign, tz: string, run: (out: HTMLElement) => Promise<void>): Promise<void> {
  const out = h('span', { class: 'status', 'data-testid': 'run-status' }, ranNote.of(c.id))
  const { targets: list } = await get<{ targets: Target[] }>(`/v1/push/campaigns/${enc(c.id)}/targets?limit=20`)
  const ab = (c.variants?.length ?? 0) > 0
  clear(
    box,
    h('h3', null, t('targets')),
    h('div', { class: 'row' }, h('button', { 'data-testid': 'run-now', disabled: c.schedule.kind === 'event', onclick: () => void run(out) }, t('runNow')), out),
    h('p', { class: 'muted small', 'data-testid': 'run-hint' }, c.schedule.kind === 'event' ? t('skipped_event_triggered') : t('runHint')),
    list.length
      ? h(
          'div',
          { class: 'scroll' },
          h(
          'table',
          { class: 'small', 'data-testid': 'targets' },
          h('tr', null, [t('customer'), ...(ab ? [t('colVariant')] : []), t('status'), t('due'), t('filledMessage')].map((x) => h('th', null, x))),
          list.map((x) =>
            h(
              'tr',
              null,
              h('td', null, x.customerNo),
              // A campaign with variants: which one this customer gets (empty for control and holdout, who get none).
              ab ? h('td', { 'data-testid': 'target-variant' }, x.messageVariant || '—') : null,
              h('td', null, x.reason ? `${tOr(`status_${x.status}`, x.status)}: ${tOr(`reason_${x.reason}`, x.reason)}` : tOr(`status_${x.status}`, x.status)),
              h('td', null, fmtTime(x.dueAt, tz)),
              h('td', null, x.title ? h('b', null, `${x.title} `) : null, x.body),
            ),
          ),
          ),
        )
      : h('p', { class: 'muted' }, t('noTargetsYet')),
  )
}

const DAYS = 14

/** Two weeks from today in the tenant's zone: each day's campaigns and their local times (cron runs from the server). */
export async function calendar(box: HTMLElement, campaigns: Campaign[], tz: string): Promise<void> {
  const now = new Date()
  const today = localDay(now, tz)
  const runs = new Map<string, Runs>()
  await Promise.all(
    cronsOf(campaigns).map(async (cron) => {
      try {
        const r = await api<SchedulePreview>('POST', '/v1/push/schedules/preview', { cron, timeZone: tz, count: DAYS, from: now.toISOString() })
        runs.set(cron, r.runs)
      } catch (e) {
        // A saved cron the server no longer reads is left off the calendar, not the whole calendar.
        if (!(e instanceof ApiError)) throw e
      }
    }),
  )
  const occ = occurrences(campaigns, runs, now, DAYS, tz)
  const time = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit' })
  const weekday = new Intl.DateTimeFormat(lang() === 'zh' ? 'zh-CN' : 'en-GB', { timeZone: 'UTC', weekday: 'short' })
  const color = new Map(campaigns.map((c, i) => [c.id, PALETTE[i % PALETTE.length]!]))
  const eventDriven = campaigns.filter((c) => c.schedule.kind === 'event')
  clear(
    box,
    h('h3', null, t('calendar'), ' ', h('small', { class: 'muted', translate: 'no' }, tz)),
    h(
      'div',
      { class: 'calendar', 'data-testid': 'calendar' },
      Array.from({ length: DAYS }, (_, i) => {
        const day = addDays(today, i)
        const items = occ.filter((o) => o.day === day)
        return h(
          'div',
          { class: `cal-day${i === 0 ? ' today' : ''}`, 'data-day': day },
          h('div', { class: 'cal-head' }, h('b', null, day.slice(5)), ' ', weekday.format(new Date(`${day}T12:00:00Z`))),
          items.map((o) =>
            h(
              'div',
              { class: `cal-item${o.campaign.status === 'paused' ? ' paused' : ''}`, style: `border-color:${color.get(o.campaign.id)}`, title: o.campaign.name, 'data-campaign': o.campaign.id },
              h('span', { class: 'time' }, o.at ? time.format(o.at) : t('activeHourShort')),
              ' ',
              o.campaign.name,
            ),
          ),
        )
      }),
    ),
    eventDriven.length ? h('p', { class: 'muted small' }, `${t('onEvents')}: ${eventDriven.map((c) => c.name).join(', ')}`) : null,
  )
}
