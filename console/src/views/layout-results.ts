import { get } from '../api.js'
import { clear, fmtInt, fmtPct, h } from '../dom.js'
import { lang } from '../i18n.js'

/**
 * The home screen's online results (GET /v1/layout/experiments): per arm, and per module of
 * each arm, exposures, click-through and conversions with their 95% intervals and the
 * difference from the holdout. Its words live here, beside the one panel that uses them.
 */

interface P {
  rate: number | null
  low: number | null
  high: number | null
}
interface D {
  diff: number
  low: number
  high: number
}
interface Row {
  holdout: boolean
  experiment: string | null
  variant: string | null
  module?: string
  exposures: number
  customers: number
  clicks: number
  ctr: P
  customerCtr: P
  conversions: number
  customerConversion: P
  vsHoldout: null | { customerCtr: D | null; customerConversion: D | null }
}
interface Report {
  from: string
  to: string
  unattributedClicks: number
  arms: Row[]
  modules: Row[]
}

const WORDS = {
  zh: {
    title: '线上效果', from: '从', to: '到', show: '查看', arm: '分组', module: '模块', holdout: '对照组（不个性化）', none: '未参加实验',
    exposures: '曝光', customers: '客户', clicks: '点击', ctr: '点击率', customerCtr: '客户点击率', conversion: '客户转化率', vsHoldout: '较对照组',
    note: '区间为 95% 置信区间（Wilson）；与对照组之差用 Newcombe 区间，跨过 0 即尚无显著差异。未归因点击：',
  },
  en: {
    title: 'Online results', from: 'From', to: 'to', show: 'Show', arm: 'Arm', module: 'Module', holdout: 'Holdout (not personalized)', none: 'No experiment',
    exposures: 'Exposures', customers: 'Customers', clicks: 'Clicks', ctr: 'CTR', customerCtr: 'Customer CTR', conversion: 'Customer conversion', vsHoldout: 'vs holdout',
    note: '95% intervals (Wilson); the difference from the holdout uses Newcombe’s interval: one that spans 0 shows no clear difference yet. Unattributed clicks: ',
  },
} as const
const w = (k: keyof (typeof WORDS)['en']) => WORDS[lang()][k]

const interval = (p: P) => (p.rate === null ? '—' : `${fmtPct(p.rate)} (${fmtPct(p.low)}–${fmtPct(p.high)})`)
const diff = (d: D | null | undefined) => (d ? `${d.diff >= 0 ? '+' : ''}${fmtPct(d.diff)} (${fmtPct(d.low)}…${fmtPct(d.high)})` : '—')
// Experiment and variant ids are identifiers: shown as written, never machine-translated.
const armName = (r: Row) => (r.holdout ? w('holdout') : r.variant ? h('code', { translate: 'no' }, `${r.experiment}/${r.variant}`) : w('none'))

function table(rows: Row[], withModule: boolean): HTMLElement {
  return h(
    'table',
    { class: 'small' },
    h('tr', null, [w('arm'), withModule ? w('module') : null, w('exposures'), w('customers'), w('clicks'), w('ctr'), w('customerCtr'), w('conversion'), w('vsHoldout')].map((x) => (x === null ? null : h('th', null, x)))),
    rows.map((r) =>
      h(
        'tr',
        { 'data-testid': 'result-row', 'data-arm': r.holdout ? 'holdout' : (r.variant ?? '') },
        h('td', null, armName(r)),
        withModule ? h('td', null, h('code', { translate: 'no' }, r.module ?? '')) : null,
        h('td', null, fmtInt(r.exposures)),
        h('td', null, fmtInt(r.customers)),
        h('td', null, fmtInt(r.clicks)),
        h('td', null, interval(r.ctr)),
        h('td', null, interval(r.customerCtr)),
        h('td', null, interval(r.customerConversion)),
        h('td', null, r.vsHoldout ? `${diff(r.vsHoldout.customerCtr)} · ${diff(r.vsHoldout.customerConversion)}` : '—'),
      ),
    ),
  )
}

/** The panel, with its own date range (the last 7 days of the bank until one is chosen). */
export function layoutResultsPanel(): HTMLElement {
  const from = h('input', { type: 'date', 'data-testid': 'results-from' })
  const to = h('input', { type: 'date', 'data-testid': 'results-to' })
  const out = h('div', { 'data-testid': 'layout-results' })
  async function show() {
    const q = new URLSearchParams()
    if (from.value) q.set('from', from.value)
    if (to.value) q.set('to', to.value)
    try {
      const r = await get<Report>(`/v1/layout/experiments?${q.toString()}`)
      from.value = r.from
      to.value = r.to
      clear(out, table(r.arms, false), table(r.modules, true), h('p', { class: 'muted small' }, `${w('note')}${fmtInt(r.unattributedClicks)}`))
    } catch (e) {
      clear(out, h('p', { class: 'issue' }, (e as Error).message))
    }
  }
  void show()
  return h(
    'div',
    { class: 'panel' },
    h('h3', null, w('title')),
    h('div', { class: 'row' }, h('label', null, w('from'), ' ', from), h('label', null, w('to'), ' ', to), h('button', { onclick: () => void show() }, w('show'))),
    out,
  )
}
