import { zoned } from '../zone.js'
import type { Campaign, Message, Schedule } from '../types.js'

/** The campaign form's draft: from a saved campaign (`toDraft`) and back to the body the API takes (`toBody`). */

/** A message's texts as the form edits them. */
export interface DraftTexts {
  titleZh: string
  titleEn: string
  bodyZh: string
  bodyEn: string
  elderZh: string
  elderEn: string
}

/** A message variant after the first: its id, share and texts. */
export interface DraftVariant extends DraftTexts {
  id: string
  weight: number
}

/** The form's fields; its texts (DraftTexts) are the first variant's, or the one message's. */
export interface Draft extends DraftTexts {
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
  /**
   * Variants (A/B): the texts above are the first variant's (the baseline), with `firstId` and
   * `firstWeight`; `others` are the rest. Without others the campaign has one message.
   */
  firstId: string
  firstWeight: number
  others: DraftVariant[]
  controlPerMille: number
  conversionEvents: string
  conversionHours: number
  changeNote: string
  baseVersion: number
  /** Archived: never runs; changed by nothing until restored (restored, it is paused). */
  archived: boolean
}

export const CRON_PRESETS: [string, string][] = [
  ['0 10 * * *', 'presetDaily'],
  ['30 9 * * 1-5', 'presetWeekdays'],
  ['0 10 * * 6', 'presetSaturday'],
  ['0 10 1 * *', 'presetMonthly'],
]

export const blank = (): Draft => ({
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
  firstId: 'A',
  firstWeight: 100,
  others: [],
  controlPerMille: 50,
  conversionEvents: '',
  conversionHours: 72,
  changeNote: '',
  baseVersion: 0,
  archived: false,
})

const textsOf = (m: Message): DraftTexts => ({
  titleZh: m.title?.zh ?? '',
  titleEn: m.title?.en ?? '',
  bodyZh: m.body.zh,
  bodyEn: m.body.en,
  elderZh: m.elder?.body.zh ?? '',
  elderEn: m.elder?.body.en ?? '',
})

/** The message the API takes from the form's texts. */
export function messageOf(d: DraftTexts): Message {
  return {
    ...(d.titleZh || d.titleEn ? { title: { zh: d.titleZh || d.titleEn, en: d.titleEn || d.titleZh } } : {}),
    body: { zh: d.bodyZh, en: d.bodyEn },
    // An elder text left empty in one language falls back to the standard body of that language, not to the other language.
    ...(d.elderZh || d.elderEn ? { elder: { body: { zh: d.elderZh || d.bodyZh, en: d.elderEn || d.bodyEn } } } : {}),
  }
}

export function toDraft(c: Campaign, tz: string): Draft {
  const s = c.schedule
  const [first, ...others] = c.variants ?? []
  const texts = textsOf(first?.message ?? c.message ?? { body: { zh: '', en: '' } })
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
    ...texts,
    firstId: first?.id ?? 'A',
    firstWeight: first?.weight ?? 100,
    others: others.map((v) => ({ id: v.id, weight: v.weight, ...textsOf(v.message) })),
    controlPerMille: c.controlPerMille,
    conversionEvents: c.conversion?.event.names?.join(', ') ?? '',
    conversionHours: c.conversion?.withinHours ?? 72,
    baseVersion: c.version,
    archived: c.status === 'archived',
  }
}

export function toBody(d: Draft, tz: string): Record<string, unknown> {
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
    ...(d.others.length
      ? { variants: [{ id: d.firstId, weight: d.firstWeight, message: messageOf(d) }, ...d.others.map((v) => ({ id: v.id, weight: v.weight, message: messageOf(v) }))] }
      : { message: messageOf(d) }),
    controlPerMille: d.controlPerMille,
    ...(events.length ? { conversion: { event: { names: events }, withinHours: d.conversionHours } } : {}),
    changeNote: d.changeNote,
  }
}
