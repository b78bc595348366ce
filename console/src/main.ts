import './style.css'
import { get, session, setUnauthorizedHandler } from './api.js'
import { disposeCharts } from './charts.js'
import { clear, h } from './dom.js'
import { lang, setLang, t } from './i18n.js'
import { store } from './store.js'
import type { Tenant } from './types.js'
import { auditView } from './views/audit.js'
import { campaignsView } from './views/campaigns.js'
import { layoutView } from './views/layout.js'
import { pipelinesView } from './views/pipelines.js'
import { segmentsView } from './views/segments.js'
import { signInView } from './views/signin.js'
import { tagsView } from './views/tags.js'

/** The shell: sign-in, the navigation between screens (in the URL hash) and the language switch. */

const app = document.getElementById('app')!
const ROUTES = {
  segments: { label: 'navSegments', view: segmentsView },
  tags: { label: 'navTags', view: tagsView },
  campaigns: { label: 'navCampaigns', view: campaignsView },
  layout: { label: 'navLayout', view: layoutView },
  pipelines: { label: 'navPipelines', view: pipelinesView },
  audit: { label: 'navAudit', view: auditView },
} as const
type Route = keyof typeof ROUTES

function current(): { route: Route; params: URLSearchParams } {
  const [path = '', query = ''] = location.hash.replace(/^#\/?/, '').split('?')
  return { route: path in ROUTES ? (path as Route) : 'segments', params: new URLSearchParams(query) }
}

function langSwitch(): HTMLElement {
  return h('button', { class: 'lang', 'data-testid': 'lang-switch', onclick: () => (setLang(lang() === 'zh' ? 'en' : 'zh'), render()) }, lang() === 'zh' ? 'English' : '中文')
}

/** A reload, so that nothing of the tenant signed in (drafts, caches) outlives the session. */
function signOut() {
  session.signOut()
  location.reload()
}

async function render() {
  disposeCharts()
  document.documentElement.lang = lang() === 'zh' ? 'zh-CN' : 'en'
  document.title = `${t('appTitle')} · 千面 Qianmian`
  if (!session.key()) return signInView(app, (tenant) => (store.setTenant(tenant), render()), langSwitch())
  let tenant: Tenant
  try {
    tenant = store.tenantOrNull() ?? (await get<Tenant>('/v1/tenant'))
    store.setTenantIfNew(tenant)
  } catch {
    return signOut()
  }
  const { route, params } = current()
  const main = h('main', { 'data-testid': `view-${route}` }, h('p', { class: 'muted' }, t('loading')))
  clear(
    app,
    h(
      'header',
      { class: 'top' },
      h('div', { class: 'brand' }, '千面', h('span', null, ' Qianmian')),
      h('nav', null, (Object.keys(ROUTES) as Route[]).map((r) => h('a', { href: `#/${r}`, class: r === route ? 'on' : '', 'data-testid': `nav-${r}` }, t(ROUTES[r].label)))),
      h('div', { class: 'who' }, h('span', { 'data-testid': 'tenant-name', title: tenant.slug }, tenant.name), langSwitch(), h('button', { class: 'link', 'data-testid': 'signout', onclick: signOut }, t('signOut'))),
    ),
    main,
  )
  try {
    await ROUTES[route].view(main, params)
  } catch (e) {
    clear(main, h('div', { class: 'panel issue' }, (e as Error).message))
  }
}

setUnauthorizedHandler(signOut)
window.addEventListener('hashchange', () => void render())
void render()
