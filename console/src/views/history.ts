import { diff, shortValue, type Change } from '../diff.js'
import { clear, fmtTime, h, select } from '../dom.js'
import { t, tf, tOr } from '../i18n.js'

/**
 * The version history of a segment, campaign, tag or catalogue: who changed it (the key's
 * holder, as the API records it), when and why, and what changed between any two versions,
 * path by path. The bookkeeping fields (version, who, when, note) are left out of the diff.
 */

export interface Version {
  version: number
  createdBy: string
  createdAt: string
  changeNote?: string
}

const BOOKKEEPING = new Set(['version', 'createdBy', 'createdAt', 'changeNote', 'id'])
/**
 * A group of one condition says the same as the condition: the editor saves `{all: [x]}` where
 * the API was sent `x`. Both read as `x`, so the diff shows changes of meaning, not of wrapping.
 */
function unwrap(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(unwrap)
  if (typeof x !== 'object' || x === null) return x
  const keys = Object.keys(x)
  const o = x as Record<string, unknown>
  if (keys.length === 1 && (keys[0] === 'all' || keys[0] === 'any') && Array.isArray(o[keys[0]]) && (o[keys[0]] as unknown[]).length === 1) return unwrap((o[keys[0]] as unknown[])[0])
  return Object.fromEntries(keys.map((k) => [k, unwrap(o[k])]))
}
const content = (v: Version) => unwrap(Object.fromEntries(Object.entries(v).filter(([k]) => !BOOKKEEPING.has(k))))

// The fields of a definition the dictionary has a word for; the path stays beside it, as written.
const FIELDS = ['name', 'description', 'purpose', 'rule', 'status', 'message', 'audience', 'channel', 'priority', 'type', 'sensitivity', 'owner'] as const
const fieldWord = (path: string) => {
  const first = path.split('.')[0]!
  if (first === 'archived') return t('archivedTag')
  return (FIELDS as readonly string[]).includes(first) ? t(first as (typeof FIELDS)[number]) : null
}

/** A value in words where the console has them (a purpose, a status, yes/no); otherwise as written. */
function valueNode(tag: 'del' | 'ins', path: string, v: unknown): HTMLElement {
  const word =
    v === true ? t('yes') : v === false ? t('no') : path === 'purpose' && typeof v === 'string' ? tOr(`purpose_${v}`, '') : path === 'status' && typeof v === 'string' ? tOr(v === 'archived' ? 'archivedTag' : v, '') : ''
  return word ? h(tag, { title: shortValue(v) }, word) : h(tag, { translate: 'no' }, shortValue(v))
}

function changeRow(c: Change): HTMLElement {
  const word = fieldWord(c.path)
  return h(
    'li',
    { class: `change ${c.kind}`, 'data-testid': 'diff-change', 'data-path': c.path, 'data-kind': c.kind },
    h('span', { class: 'change-kind' }, t(`diff_${c.kind}`)),
    ' ',
    word ? [h('b', null, word), ' '] : null,
    h('code', { translate: 'no' }, c.path || '—'),
    c.kind !== 'added' ? [' ', valueNode('del', c.path, c.before)] : null,
    c.kind === 'changed' ? ' → ' : ' ',
    c.kind !== 'removed' ? valueNode('ins', c.path, c.after) : null,
  )
}

/**
 * The history as a panel: the versions newest first (with `load` when an old one can be
 * restored into the editor) and a diff between two chosen versions, by default the last change.
 */
export function historyPanel<V extends Version>(versions: V[], o: { timeZone: string; load?: (v: V) => void; open?: boolean; testid?: string }): HTMLElement {
  const byVersion = new Map(versions.map((v) => [v.version, v]))
  const newest = versions.at(-1)
  let to = newest?.version ?? 0
  let from = versions.at(-2)?.version ?? to
  const out = h('div', { class: 'diff', 'data-testid': 'diff' })
  const drawDiff = () => {
    const a = byVersion.get(from)
    const b = byVersion.get(to)
    if (!a || !b) return clear(out)
    const changes = diff(content(a), content(b))
    clear(
      out,
      h('p', { class: 'small muted' }, tf('diffSummary', { from: `v${from}`, to: `v${to}`, n: changes.length }), ' ', h('span', { translate: 'no' }, b.createdBy)),
      changes.length ? h('ul', { class: 'changes' }, changes.map(changeRow)) : h('p', { class: 'small muted', 'data-testid': 'diff-none' }, t('diffNone')),
    )
  }
  const options = [...versions].reverse().map((v): [string, string] => [String(v.version), `v${v.version}`])
  const pick = (which: 'from' | 'to') =>
    select(
      {
        'data-testid': `diff-${which}`,
        onchange: (e: Event) => {
          const n = Number((e.target as HTMLSelectElement).value)
          if (which === 'from') from = n
          else to = n
          drawDiff()
        },
      },
      options,
      String(which === 'from' ? from : to),
    )
  drawDiff()
  return h(
    'details',
    { class: 'versions', open: o.open ?? true, 'data-testid': o.testid ?? 'history' },
    h('summary', null, `${t('versionHistory')} (${versions.length})`),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { 'data-testid': 'versions' },
        h('tr', null, h('th', null, t('versionShort')), h('th', null, t('when')), h('th', null, t('who')), h('th', null, t('changeNote')), o.load ? h('th', null, '') : null),
        [...versions].reverse().map((v) =>
          h(
            'tr',
            { 'data-version': v.version },
            h('td', null, `v${v.version}`),
            h('td', null, fmtTime(v.createdAt, o.timeZone, { year: true })),
            h('td', { translate: 'no', 'data-testid': 'version-holder' }, v.createdBy),
            h('td', { translate: 'no' }, v.changeNote || '—'),
            o.load ? h('td', null, v === newest ? '' : h('button', { class: 'link', onclick: () => o.load!(v) }, t('load'))) : null,
          ),
        ),
      ),
    ),
    versions.length > 1 ? [h('div', { class: 'row' }, t('compare'), ' ', pick('from'), ' → ', pick('to')), out] : null,
  )
}
