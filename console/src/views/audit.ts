import { get } from '../api.js'
import { clear, fmtTime, h } from '../dom.js'
import { t, tOr } from '../i18n.js'
import { store } from '../store.js'
import type { AuditEntry } from '../types.js'

/**
 * The audit trail: who did what, to which object and customer, when, from where, and whether it
 * happened. Filters map one to one onto `GET /v1/audit`; older entries come a page at a time.
 */

const FILTERS = ['actor', 'action', 'objectKind', 'customer'] as const
type Filter = (typeof FILTERS)[number]
const LABEL = { actor: 'auditActor', action: 'auditAction', objectKind: 'auditObjectKind', customer: 'auditCustomer' } as const
const PAGE = 100

// The filters last applied: the screen is drawn again on navigation and keeps them.
const state: Record<Filter | 'from' | 'to', string> = { actor: '', action: '', objectKind: '', customer: '', from: '', to: '' }

/** A `YYYY-MM-DD` day of the date inputs as an ISO time: the start of that day, UTC. */
const dayStart = (d: string, plusDays = 0) => new Date(Date.parse(`${d}T00:00:00Z`) + plusDays * 86_400_000).toISOString()

function query(cursor: string | null): string {
  const q = new URLSearchParams({ limit: String(PAGE) })
  for (const f of FILTERS) if (state[f].trim()) q.set(f, state[f].trim())
  if (state.from) q.set('from', dayStart(state.from))
  // The `to` day is included whole.
  if (state.to) q.set('to', dayStart(state.to, 1))
  if (cursor) q.set('cursor', cursor)
  return q.toString()
}

export async function auditView(root: HTMLElement): Promise<void> {
  const tz = store.tenant().timeZone
  const rows = h('tbody', { 'data-testid': 'audit-rows' })
  const status = h('p', { class: 'status', 'data-testid': 'audit-status' })
  const more = h('button', { class: 'link', 'data-testid': 'audit-more', hidden: true }, t('auditMore'))
  let next: string | null = null

  const row = (e: AuditEntry) =>
    h(
      'tr',
      { 'data-testid': 'audit-entry', class: e.outcome === 'ok' ? '' : 'issue' },
      h('td', null, fmtTime(e.at, tz, { year: true })),
      // Holders, actions and object kinds are the names the filters take: shown as written.
      h('td', { title: `${t('auditKey')} ${e.keyId} · ${e.roles.join(', ')}`, translate: 'no' }, e.holder),
      h('td', { translate: 'no' }, e.action),
      h('td', { translate: 'no' }, e.objectId ? `${e.objectKind} ${e.objectId}` : e.objectKind),
      h('td', null, e.customerNo || '—'),
      h('td', null, e.customers || '—'),
      h('td', null, `${tOr(`outcome_${e.outcome}`, e.outcome)} (${e.status})`),
      h('td', { class: 'small muted' }, `${e.clientIp} · ${e.requestId}`),
    )

  async function load(append: boolean) {
    status.textContent = t('loading')
    try {
      const page = await get<{ entries: AuditEntry[]; nextCursor: string | null }>(`/v1/audit?${query(append ? next : null)}`)
      if (!append) rows.replaceChildren()
      for (const e of page.entries) rows.appendChild(row(e))
      next = page.nextCursor
      more.hidden = !next
      status.textContent = rows.children.length ? '' : t('auditNone')
    } catch (e) {
      status.textContent = (e as Error).message
    }
  }
  more.addEventListener('click', () => void load(true))

  const input = (f: Filter | 'from' | 'to', label: string, type = 'text') =>
    h('label', null, label, h('input', { type, value: state[f], 'data-testid': `audit-${f}`, oninput: (e: Event) => (state[f] = (e.target as HTMLInputElement).value) }))

  clear(
    root,
    h(
      'div',
      { class: 'panel' },
      h('h3', null, t('navAudit')),
      h('p', { class: 'muted small' }, t('auditIntro')),
      h(
        'form',
        { class: 'filters', 'data-testid': 'audit-filters', onsubmit: (e: Event) => (e.preventDefault(), void load(false)) },
        FILTERS.map((f) => input(f, t(LABEL[f]))),
        input('from', t('auditFrom'), 'date'),
        input('to', t('auditTo'), 'date'),
        h('button', { type: 'submit', 'data-testid': 'audit-apply' }, t('auditApply')),
      ),
      status,
      h(
        'table',
        { class: 'small' },
        h('thead', null, h('tr', null, ['auditWhen', 'auditWho', 'auditAction', 'auditObject', 'auditCustomer', 'auditCustomers', 'auditOutcome', 'auditFromWhere'].map((k) => h('th', null, t(k as Parameters<typeof t>[0]))))),
        rows,
      ),
      more,
    ),
  )
  await load(false)
}
