import { clear, fmtInt, fmtPct, h } from '../dom.js'
import { t, tf } from '../i18n.js'
import type { Campaign, Message, VariantStats } from '../types.js'
import type { Draft, DraftTexts, DraftVariant } from './campaign-draft.js'

/**
 * Message variants (A/B) in the campaign form, and their results beside it. The form's own
 * message fields are the first variant (the baseline); each added variant gets its own texts and
 * a share. The shares must add up to 100: the sum is shown as it is typed, in red when it is not.
 */

const MAX_VARIANTS = 8
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'

/** Shares spread evenly over `n` variants, the rest of the division to the first. */
export function evenSplit(n: number): number[] {
  const each = Math.floor(100 / n)
  return Array.from({ length: n }, (_, i) => (i === 0 ? 100 - each * (n - 1) : each))
}

const sumOf = (d: Draft) => d.firstWeight + d.others.reduce((a, v) => a + v.weight, 0)

export function variantEditor(d: Draft, redraw: () => void): HTMLElement {
  const box = h('div', { class: 'variants', 'data-testid': 'variants' })
  const sum = h('p', { class: 'small', 'data-testid': 'split-sum' })
  const showSum = () => {
    const total = sumOf(d)
    sum.className = total === 100 ? 'small muted' : 'small issue'
    sum.textContent = `${t('splitSum')}：${total}%${total === 100 ? '' : ` · ${t('splitNot100')}`}`
  }
  const share = (get: () => number, set: (n: number) => void, id: string) =>
    h('label', { class: 'field' }, h('span', null, t('variantShare')), h('input', {
      type: 'number', min: 0, max: 100, value: String(get()), 'data-testid': `v-weight-${id}`,
      oninput: (e: Event) => (set(Math.trunc(Number((e.target as HTMLInputElement).value) || 0)), showSum()),
    }))
  const text = (v: DraftVariant, key: keyof DraftTexts, label: string, rows?: number) =>
    h('label', { class: 'field' }, h('span', null, label), h(rows ? 'textarea' : 'input', {
      ...(rows ? { rows } : {}), value: v[key], 'data-testid': `v-${v.id}-${key}`,
      oninput: (e: Event) => (v[key] = (e.target as HTMLInputElement).value),
    }))
  const add = () => {
    const used = new Set([d.firstId, ...d.others.map((v) => v.id)])
    const id = [...LETTERS].find((l) => !used.has(l))!
    // A new variant starts from the baseline's texts: the marketer changes what is tested.
    d.others.push({ id, weight: 0, titleZh: d.titleZh, titleEn: d.titleEn, bodyZh: d.bodyZh, bodyEn: d.bodyEn, elderZh: d.elderZh, elderEn: d.elderEn })
    const split = evenSplit(d.others.length + 1)
    d.firstWeight = split[0]!
    d.others.forEach((v, i) => (v.weight = split[i + 1]!))
    redraw()
  }
  const remove = (id: string) => {
    d.others = d.others.filter((v) => v.id !== id)
    const split = evenSplit(d.others.length + 1)
    d.firstWeight = d.others.length ? split[0]! : 100
    d.others.forEach((v, i) => (v.weight = split[i + 1]!))
    redraw()
  }
  const adder = d.others.length + 1 < MAX_VARIANTS ? h('button', { 'data-testid': 'add-variant', onclick: add }, `+ ${t('addVariant')}`) : null
  if (!d.others.length) {
    clear(box, h('h4', null, t('variantsTitle')), h('p', { class: 'muted small' }, t('variantsHint')), adder)
    return box
  }
  clear(
    box,
    h('h4', null, t('variantsTitle')),
    h('p', { class: 'muted small' }, t('variantsHint')),
    h('div', { class: 'variant', 'data-variant': d.firstId }, h('b', null, `${tf('variantName', { id: d.firstId })} · ${t('baseline')}`), share(() => d.firstWeight, (n) => (d.firstWeight = n), d.firstId)),
    d.others.map((v) =>
      h(
        'div',
        { class: 'variant', 'data-variant': v.id },
        h('div', { class: 'row' }, h('b', null, tf('variantName', { id: v.id })), h('button', { 'data-testid': `remove-variant-${v.id}`, onclick: () => remove(v.id) }, t('removeVariant'))),
        h(
          'div',
          { class: 'form-grid two' },
          share(() => v.weight, (n) => (v.weight = n), v.id),
          h('span'),
          text(v, 'titleZh', t('titleZh')),
          text(v, 'titleEn', t('titleEn')),
          text(v, 'bodyZh', t('bodyZh'), 2),
          text(v, 'bodyEn', t('bodyEn'), 2),
          text(v, 'elderZh', t('elderZh'), 2),
          text(v, 'elderEn', t('elderEn'), 2),
        ),
      ),
    ),
    sum,
    adder,
  )
  showSum()
  return box
}

/** The messages of a saved campaign by variant id ('' for a campaign with one message). */
export const messagesOf = (c: Campaign): { id: string; message: Message }[] => c.variants ?? (c.message ? [{ id: '', message: c.message }] : [])

/** The split as text: "A 50% · B 50%". */
export const splitText = (c: Campaign) => (c.variants ?? []).map((v) => `${v.id} ${v.weight}%`).join(' · ')

const interval = (low: number | null, high: number | null) => (low === null || high === null ? '' : ` (${fmtPct(low)}–${fmtPct(high)})`)
const signed = (x: number | null) => (x === null ? '—' : `${x > 0 ? '+' : ''}${fmtPct(x)}`)

/** The funnel per variant: counts, click-through and conversion with their intervals, and each variant against A. */
export function variantResults(rows: readonly VariantStats[]): HTMLElement | null {
  if (!rows.length) return null
  const hasGoal = rows.some((r) => r.conversion !== null)
  const head = [t('colVariant'), t('colShare'), t('targeted'), t('queued'), t('sent'), t('clicked'), t('colClickRate'), ...(hasGoal ? [t('colConversionRate')] : []), t('colVsBaseline')]
  const vs = (r: VariantStats) => {
    if (!r.vsBaseline) return t('baseline')
    const parts = [`${t('colClickRate')} ${signed(r.vsBaseline.clickThrough.diff)}${interval(r.vsBaseline.clickThrough.low, r.vsBaseline.clickThrough.high)}`]
    const c = r.vsBaseline.conversion
    if (c) parts.push(`${t('colConversionRate')} ${signed(c.diff)}${interval(c.low, c.high)}`)
    return parts.join('；')
  }
  return h(
    'div',
    { 'data-testid': 'variant-results' },
    h('h4', null, t('variantResults')),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'small' },
        h('tr', null, head.map((x) => h('th', null, x))),
        rows.map((r) =>
          h(
            'tr',
            { 'data-variant': r.variant },
            h('td', null, h('b', null, r.variant)),
            h('td', null, r.weight === null ? t('variantGone') : `${r.weight}%`),
            h('td', null, fmtInt(r.targeted)),
            h('td', null, fmtInt(r.queued)),
            h('td', null, fmtInt(r.sent)),
            h('td', null, fmtInt(r.clicked)),
            h('td', null, `${fmtPct(r.clickThrough.rate)}${interval(r.clickThrough.low, r.clickThrough.high)}`),
            hasGoal ? h('td', null, r.conversion ? `${fmtPct(r.conversion.rate)}${interval(r.conversion.low, r.conversion.high)}` : '—') : null,
            h('td', null, vs(r)),
          ),
        ),
      ),
    ),
    h('p', { class: 'muted small' }, t('ciNote')),
  )
}
