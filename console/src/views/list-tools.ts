import { ApiError } from '../api.js'
import { debounce, h, select, type Child } from '../dom.js'
import { t, tf } from '../i18n.js'

/**
 * What the segment and campaign lists share: a search box and an archive filter above the list
 * (both answered by the API: `?q=` and `?archived=`), a free id for a copy, and the users an
 * archive was refused for, named.
 */

export type ArchivedFilter = 'exclude' | 'only' | 'include'

export interface ListQuery {
  q: string
  archived: ArchivedFilter
}

export const listQueryString = (l: ListQuery) => `?archived=${l.archived}${l.q.trim() ? `&q=${encodeURIComponent(l.q.trim())}` : ''}`

/** The search box and the filter; `changed` runs 250 ms after the last keystroke, at once for the filter. */
export function listFilters(state: ListQuery, changed: () => void, prefix: string): HTMLElement {
  const later = debounce(250, changed)
  return h(
    'div',
    { class: 'list-filters' },
    h('input', { type: 'search', placeholder: t('searchList'), value: state.q, 'data-testid': `${prefix}-search`, oninput: (e: Event) => ((state.q = (e.target as HTMLInputElement).value), later()) }),
    select(
      { 'data-testid': `${prefix}-archived-filter`, onchange: (e: Event) => ((state.archived = (e.target as HTMLSelectElement).value as ArchivedFilter), changed()) },
      [
        ['exclude', t('listCurrent')],
        ['only', t('listArchived')],
        ['include', t('listAll')],
      ],
      state.archived,
    ),
  )
}

/** An id for a copy of `id` that none of `taken` has: `id-copy`, then `id-copy-2`… within the id's 63 characters. */
export function copyId(id: string, taken: Iterable<string>): string {
  const used = new Set(taken)
  const base = `${id.slice(0, 52)}-copy`
  if (!used.has(base)) return base
  for (let i = 2; ; i++) if (!used.has(`${base}-${i}`)) return `${base}-${i}`
}

const KINDS: Record<string, 'useCampaign' | 'useSegment'> = { campaign: 'useCampaign', segment: 'useSegment' }

/**
 * A refused archive (409 IN_USE) as the users it names: "still used by: campaign x (audience)…",
 * the ids as written. Any other error is its message.
 */
export function archiveRefusal(e: unknown): Child {
  if (!(e instanceof ApiError) || e.code !== 'IN_USE') return (e as Error).message
  const users = e.issues.map((i) => {
    const x = i as { kind?: string; id?: string; at?: string }
    const kind = x.kind && KINDS[x.kind] ? t(KINDS[x.kind]!) : (x.kind ?? '')
    return h('li', { 'data-testid': 'in-use-user' }, `${kind} `, h('code', { translate: 'no' }, x.id ?? ''), x.at ? [' · ', h('code', { translate: 'no' }, x.at)] : null)
  })
  return [h('span', null, tf('inUseBy', { n: users.length })), h('ul', { class: 'in-use' }, users)]
}

/** Redraws a list that holds `filters` without taking the focus from the search box being typed in. */
export function keepingFocus(filters: HTMLElement, draw: () => void): void {
  const focused = document.activeElement
  const input = focused instanceof HTMLInputElement && filters.contains(focused) ? focused : null
  const at = input?.selectionStart ?? null
  draw()
  if (!input) return
  input.focus()
  if (at !== null) input.setSelectionRange(at, at)
}
