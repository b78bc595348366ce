import { api, enc, get } from '../api.js'
import { clear, h, type Child } from '../dom.js'
import { lang, t, tOr } from '../i18n.js'
import type { Layout, Preview, Reason } from '../types.js'
import { store } from '../store.js'
import { historyPanel } from './history.js'
import { layoutResultsPanel } from './layout-results.js'

/**
 * The home screen a customer would get, in standard and elder mode side by side
 * (GET /v1/layout with mode=standard and mode=elder), each module and item with its reason.
 */

let customer = ''

// What the customer reads (`text`, in the console's language: the layout is asked for in it),
// then for the marketer the mechanism and what decided it; the engineers' English `detail` is the tooltip.
// The tags, segment or products that decided it are identifiers, shown as written (translate="no").
function reasonText(r: Reason): Child[] {
  const extra = Array.isArray(r.tags) ? (r.tags as string[]).join(', ') : typeof r.segment === 'string' ? r.segment : Array.isArray(r.because) ? (r.because as string[]).join(', ') : ''
  return [`${r.text ?? r.detail} · ${tOr(`why_${r.kind}`, r.kind)}`, extra ? [': ', h('span', { translate: 'no' }, extra)] : null]
}
const why = (r: Reason) => h('small', { class: 'why', title: r.detail, 'data-testid': 'reason', 'data-code': r.code ?? '' }, reasonText(r))

function phone(mode: 'standard' | 'elder', l: Layout): HTMLElement {
  return h(
    'figure',
    { class: `phone ${mode}${l.largeElements ? ' large' : ''}`, 'data-testid': `phone-${mode}` },
    h('figcaption', null, mode === 'elder' ? t('elderMode') : t('standardMode')),
    h(
      'div',
      { class: 'screen' },
      h('div', { class: 'statusbar' }, h('span', null, '9:41'), h('span', null, '●●●')),
      h('div', { class: 'apphead' }, t('appName'), l.holdout ? h('span', { class: 'badge' }, t('holdout')) : null),
      // personalized:false and why (the customer's switch, the holdout, an unknown visitor).
      l.personalized || !l.personalizedReason
        ? null
        : h(
            'p',
            { class: 'muted small', 'data-testid': 'not-personalized', 'data-reason': l.personalizedReason },
            t('notPersonalized'),
            ' ',
            h('code', { translate: 'no' }, 'personalized: false'),
            ` — ${tOr(`notPersonalized_${l.personalizedReason}`, l.personalizedReason)}`,
          ),
      l.modules.map((m) =>
        h(
          'section',
          { class: 'module', 'data-testid': 'module', 'data-module': m.id },
          h('div', { class: 'module-head' }, h('b', null, m.title), why(m.reason)),
          h(
            'ul',
            null,
            m.items.map((it) => h('li', null, h('span', { class: `icon-dot c-${it.category}` }), h('div', null, h('div', { class: 'item-title' }, it.title), why(it.reason)))),
          ),
        ),
      ),
    ),
    h(
      'p',
      { class: 'muted small' },
      `${l.modules.length} ${t('modules')} · ${l.known ? t('knownCustomer') : t('unknownCustomer')}`,
      l.experiment ? [` · ${t('experiment')} `, h('code', { translate: 'no' }, l.experiment.id), ` · ${t('variant')} `, h('code', { translate: 'no' }, l.experiment.variant)] : null,
    ),
  )
}

/** Who changed the bank's own home-screen catalogue and what, version against version. */
function catalogHistory(): HTMLElement {
  const box = h('div', { class: 'panel', 'data-testid': 'catalog-history-panel' }, h('h3', null, t('catalogHistory')), h('p', { class: 'muted' }, t('loading')))
  void get<{ versions: { version: number; catalog: unknown; createdBy: string; createdAt: string; changeNote: string }[] }>('/v1/layout/catalog/versions').then(
    (r) => clear(box, h('h3', null, t('catalogHistory')), r.versions.length ? historyPanel(r.versions, { timeZone: store.tenant().timeZone, open: false, testid: 'catalog-history' }) : h('p', { class: 'muted', 'data-testid': 'catalog-none' }, t('catalogNone'))),
    (e: Error) => clear(box, h('h3', null, t('catalogHistory')), h('p', { class: 'issue' }, e.message)),
  )
  return box
}

/**
 * Whose home screen this is, above the phones: a customer number the bank does not know is said
 * plainly (what is shown is the default a visitor gets, not that customer's), and a known
 * customer's personalization switch (their own choice in the app) is shown on or off.
 */
function whoState(no: string, l: Layout): HTMLElement {
  if (!l.known) {
    return h(
      'div',
      { class: 'panel who-state unknown', 'data-testid': 'unknown-customer', role: 'status' },
      h('b', null, no ? [t('unknownTitle'), ' ', h('code', { translate: 'no' }, no)] : t('anonymousTitle')),
      h('p', { class: 'small' }, no ? t('unknownBody') : t('anonymousBody')),
    )
  }
  const off = l.personalizedReason === 'personalization_off'
  return h(
    'div',
    { class: `panel who-state ${off ? 'off' : 'on'}`, 'data-testid': 'personalization-switch', 'data-state': off ? 'off' : 'on' },
    h('span', { class: `switch ${off ? 'off' : 'on'}`, 'aria-hidden': 'true' }, h('span', null)),
    h('b', null, t('personalizationSwitch'), ' ', off ? t('switchOff') : t('switchOn')),
    h('p', { class: 'small muted' }, off ? t('switchOffBody') : l.holdout ? t('switchOnHoldout') : t('switchOnBody')),
  )
}

export async function layoutView(root: HTMLElement, params: URLSearchParams): Promise<void> {
  customer = params.get('customer') ?? customer
  const input = h('input', { value: customer, placeholder: '8101…', 'data-testid': 'layout-customer', onkeydown: (e: Event) => (e as KeyboardEvent).key === 'Enter' && void show() })
  const phones = h('div', { class: 'phones', 'data-testid': 'phones' })
  async function show() {
    customer = input.value.trim()
    clear(phones, h('p', { class: 'muted' }, t('loading')))
    const q = (mode: string) => `/v1/layout?${customer ? `customerId=${enc(customer)}&` : ''}mode=${mode}&lang=${lang()}`
    try {
      const [std, elder] = await Promise.all([get<Layout>(q('standard')), get<Layout>(q('elder'))])
      clear(phones, whoState(customer, std), phone('standard', std), phone('elder', elder))
    } catch (e) {
      clear(phones, h('p', { class: 'issue' }, (e as Error).message))
    }
  }
  async function pickSample() {
    // A few customers of the bank: a preview of "has a lifecycle" samples from everyone with one.
    const p = await api<Preview>('POST', '/v1/segments/preview', { purpose: 'service', rule: { tag: 'lifecycle', op: 'exists' }, sampleSize: 20 })
    input.value = p.sample[Math.floor(Math.random() * p.sample.length)] ?? ''
    await show()
  }
  clear(
    root,
    h(
      'div',
      { class: 'panel' },
      h('h3', null, t('layoutPreview')),
      h(
        'div',
        { class: 'row' },
        h('label', null, t('customerNo'), ' ', input),
        h('button', { class: 'primary', 'data-testid': 'layout-show', onclick: () => void show() }, t('show')),
        h('button', { onclick: () => void pickSample().catch((e) => clear(phones, h('p', { class: 'issue' }, (e as Error).message))) }, t('randomCustomer')),
        h('span', { class: 'muted small' }, t('layoutHint')),
      ),
    ),
    phones,
    layoutResultsPanel(),
    catalogHistory(),
  )
  if (customer) await show()
}
