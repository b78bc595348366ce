import { bar } from '../charts.js'
import { api, enc, get } from '../api.js'
import { describeTag, type Part } from '../describe.js'
import { historyPanel } from './history.js'
import { clear, debounce, fmtInt, fmtPct, fmtTime, h, select, type Child } from '../dom.js'
import { describeCron, hasValueLabel, lang, t, tOr, valueLabel } from '../i18n.js'
import { store } from '../store.js'
import type { Preview, Tag, TagDetail } from '../types.js'

/**
 * The tag catalogue: search over names and descriptions, each tag's purpose and sensitivity,
 * coverage and last run, and on selection its definition and distribution as a chart.
 */

let query = ''
let purpose = ''
let selected = ''

/** A sentence's parts: text, and identifiers shown as written. */
const partsNodes = (parts: Part[]): Child[] => parts.map((p) => (typeof p === 'string' ? p : h('code', { translate: 'no' }, p.id)))

/** The owning team in words; a team the dictionary does not know is shown as written. */
const owner = (o: string): Child => (tOr(`owner_${o}`, '') || h('span', { translate: 'no' }, o))

export async function tagsView(root: HTMLElement): Promise<void> {
  const tags = await store.tags()
  const tz = store.tenant().timeZone
  const listBox = h('div', { class: 'tag-list' })
  const detailBox = h('div', { class: 'panel tag-detail', 'data-testid': 'tag-detail' })

  const matches = (d: Tag) => {
    const q = query.trim().toLowerCase()
    const text = `${d.name} ${d.description.zh} ${d.description.en} ${d.owner}`.toLowerCase()
    return (!q || text.includes(q)) && (!purpose || d.purpose.includes(purpose as Tag['purpose'][number]))
  }

  function drawList() {
    const shown = tags.filter(matches)
    clear(
      listBox,
      h(
        'table',
        { class: 'tags', 'data-testid': 'tag-table' },
        h('tr', null, [t('tag'), t('type'), t('purpose'), t('sensitivity'), t('coverage'), t('lastRun')].map((x) => h('th', null, x))),
        shown.map((d) =>
          h(
            'tr',
            { class: d.name === selected ? 'on' : '', 'data-tag': d.name, onclick: () => void show(d.name) },
            h('td', { class: 'tag-name' }, h('b', null, d.description[lang()]), h('div', { class: 'muted small', translate: 'no' }, d.name)),
            h('td', null, t(`type_${d.type}`)),
            h('td', null, d.purpose.map((p) => h('span', { class: `pill p-${p}` }, t(`purpose_${p}`)))),
            h('td', null, h('span', { class: `sens s-${d.sensitivity}` }, t(`sens_${d.sensitivity}`))),
            h('td', null, h('div', { class: 'meter' }, h('div', { style: `width:${((d.coverage ?? 0) * 100).toFixed(1)}%` })), h('small', null, fmtPct(d.coverage))),
            h('td', { class: 'small' }, d.state ? fmtTime(d.state.computedAt, tz) : t('never')),
          ),
        ),
      ),
      shown.length ? null : h('p', { class: 'muted' }, t('noMatch')),
    )
  }

  async function show(name: string) {
    selected = name
    drawList()
    clear(detailBox, h('p', { class: 'muted' }, t('loading')))
    const d: TagDetail = await store.tag(name)
    const chart = h('div', { class: 'chart', 'data-testid': 'distribution-chart' })
    const historyBox = h('div')
    clear(
      detailBox,
      h('h3', null, d.description[lang()], ' ', h('code', { translate: 'no' }, d.name)),
      h(
        'dl',
        { class: 'facts' },
        [
          [t('type'), t(`type_${d.type}`)],
          [t('purpose'), d.purpose.map((p) => t(`purpose_${p}`)).join(' · ')],
          [t('sensitivity'), t(`sens_${d.sensitivity}`)],
          [t('owner'), owner(d.owner)],
          [t('coverage'), `${fmtPct(d.coverage)} (${fmtInt(d.state?.covered ?? 0)})`],
          [t('schedule'), d.schedule ? (describeCron(d.schedule) ?? h('code', { translate: 'no' }, d.schedule)) : '—'],
          [t('lastRun'), d.state ? `${fmtTime(d.state.computedAt, tz, { year: true })} · ${t('changed')} ${fmtInt(d.state.changed)}` : t('never')],
          [t('version'), [`v${d.version} · `, h('span', { translate: 'no' }, d.createdBy), ` · ${fmtTime(d.createdAt, tz, { year: true })}`]],
        ].map(([k, v]) => [h('dt', null, k as string), h('dd', null, v as Child)]),
      ),
      h('h4', null, t('distribution')),
      d.distribution.length ? chart : h('p', { class: 'muted' }, t('noValues')),
      h('h4', null, t('definition')),
      h('p', { class: 'definition-sentence', 'data-testid': 'definition-sentence' }, partsNodes(describeTag(d, { lang: lang(), tagLabel: (n) => tags.find((x) => x.name === n)?.description[lang()] }))),
      h('details', null, h('summary', null, t('showDefinition')), h('pre', { class: 'json', translate: 'no' }, JSON.stringify(d.rule, null, 2))),
      historyBox,
    )
    void get<{ versions: (TagDetail & { retired: boolean })[] }>(`/v1/tags/${enc(d.name)}/versions`).then(
      (r) => selected === d.name && clear(historyBox, historyPanel(r.versions, { timeZone: tz, open: false, testid: 'tag-history' })),
      () => undefined,
    )
    const buckets = await withRest(d)
    if (buckets.length) {
      requestAnimationFrame(() =>
        bar(chart, buckets.map((b) => b.label), [{ name: t('customers'), data: buckets.map((b) => b.customers) }], { horizontal: d.type !== 'number' && d.type !== 'date', integer: true }),
      )
    }
  }

  /**
   * The distribution in words. A yes/no tag stores its "yes" customers only: the "no" bar is
   * every customer (the total of a preview) less those.
   */
  async function withRest(d: TagDetail): Promise<{ label: string; customers: number }[]> {
    const out = d.distribution.map((b) => ({ label: hasValueLabel(d.name, b.value) ? valueLabel(d.name, b.value) : b.value, customers: b.customers }))
    if (d.type !== 'boolean' || d.distribution.some((b) => b.value === 'false') || !d.purpose[0]) return out
    const p = await api<Preview>('POST', '/v1/segments/preview', { purpose: d.purpose[0], rule: { tag: d.name, op: 'exists' }, sampleSize: 0 }).catch(() => null)
    const rest = p ? p.total - out.reduce((a, b) => a + b.customers, 0) : 0
    return rest > 0 ? [...out, { label: t('no'), customers: rest }] : out
  }

  const onSearch = debounce(150, () => drawList())
  clear(
    root,
    h(
      'div',
      { class: 'tags-layout' },
      h(
        'section',
        { class: 'panel' },
        h(
          'div',
          { class: 'row' },
          h('input', { type: 'search', class: 'grow', placeholder: t('searchTags'), value: query, 'data-testid': 'tag-search', oninput: (e: Event) => ((query = (e.target as HTMLInputElement).value), onSearch()) }),
          select({ onchange: (e: Event) => ((purpose = (e.target as HTMLSelectElement).value), drawList()) }, [['', t('allPurposes')], ...(['marketing', 'service', 'risk', 'security'] as const).map((p): [string, string] => [p, t(`purpose_${p}`)])], purpose),
          h('span', { class: 'muted' }, `${tags.length} ${t('tagsCount')}`),
        ),
        listBox,
      ),
      detailBox,
    ),
  )
  drawList()
  if (selected) void show(selected)
  else clear(detailBox, h('p', { class: 'muted' }, t('pickTag')))
}
