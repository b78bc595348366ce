import { h, select, type Child } from '../dom.js'
import { hasValueLabel, lang, opLabel, t, valueLabel } from '../i18n.js'
import { issueLine } from '../issues.js'
import { ATTRIBUTES, EVENT_OPS, arity, findParent, group, leaf, opsForAttribute, opsForType, reshape } from '../rule-model.js'
import type { AttributeNode, EventNode, GroupNode, LeafKind, RuleNode, SequenceNode, TagNode } from '../rule-model.js'
import type { Purpose, SavedSegment, Scalar, TagDetail, Tag } from '../types.js'

/**
 * The visual AND/OR/NOT editor. The tree is re-rendered on structural changes (a condition
 * added, a tag or operator chosen); typing in a value only updates the model, so focus stays.
 * Errors from the API are written into each node's slot by `showIssues` without a re-render.
 */

export interface EditorCtx {
  root: GroupNode
  purpose: Purpose
  tags: Tag[]
  details: Map<string, TagDetail>
  segments: SavedSegment[]
  /** The bank's recent track events, most frequent first (null: unknown, so no names are questioned). */
  eventNames: string[] | null
  /** The model changed; `structure`: the tree must be drawn again. */
  changed(structure: boolean): void
  /** A tag was chosen whose distribution is not loaded yet. */
  needDetail(name: string): void
}

const csv = (s: string) => s.split(/[,，\s]+/).map((x) => x.trim()).filter(Boolean)
const num = (s: string) => (s.trim() === '' || Number.isNaN(Number(s)) ? 0 : Number(s))

const EVENT_LIST = 'event-names-list'

export function renderRule(ctx: EditorCtx): HTMLElement {
  return h(
    'div',
    { class: 'rule-tree', 'data-testid': 'rule-tree' },
    renderNode(ctx, ctx.root, true),
    h('datalist', { id: EVENT_LIST }, (ctx.eventNames ?? []).map((e) => h('option', { value: e }))),
  )
}

/** Edit distance, for "did you mean" on a misspelt event name. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}

/** Names the bank's app has not sent lately (they count nobody), each with the closest name it has sent. */
function unknownEvents(names: string[], known: string[] | null): { name: string; meant?: string }[] {
  if (!known?.length) return []
  return names
    .filter((n) => !known.includes(n))
    .map((name) => {
      const [meant] = known.map((k) => [k, distance(name, k)] as const).filter(([, d]) => d <= Math.max(2, Math.floor(name.length / 4))).sort((x, y) => x[1] - y[1])
      return meant ? { name, meant: meant[0] } : { name }
    })
}

function renderNode(ctx: EditorCtx, n: RuleNode, isRoot = false): HTMLElement {
  const body = n.kind === 'group' ? renderGroup(ctx, n, isRoot) : renderLeaf(ctx, n)
  const tools = isRoot
    ? null
    : h(
        'div',
        { class: 'node-tools' },
        h(
          'label',
          { class: `not-toggle${n.negated ? ' on' : ''}`, title: t('notHint') },
          h('input', { type: 'checkbox', checked: n.negated, 'data-testid': 'not', onchange: (e: Event) => ((n.negated = (e.target as HTMLInputElement).checked), ctx.changed(true)) }),
          t('not'),
        ),
        h('button', { class: 'icon', title: t('remove'), 'data-testid': 'remove', onclick: () => remove(ctx, n) }, '×'),
      )
  return h(
    'div',
    { class: `node node-${n.kind}${n.negated ? ' negated' : ''}`, 'data-node': n.id, 'data-kind': n.kind },
    h('div', { class: 'node-row' }, body, tools),
    h('div', { class: 'node-issues', 'data-testid': 'node-issues' }),
  )
}

function remove(ctx: EditorCtx, n: RuleNode) {
  const parent = findParent(ctx.root, n.id)
  if (!parent) return
  parent.children = parent.children.filter((c) => c !== n)
  ctx.changed(true)
}

function renderGroup(ctx: EditorCtx, g: GroupNode, isRoot: boolean): HTMLElement {
  const add = (kind: LeafKind | 'group', label: string) =>
    h(
      'button',
      {
        class: 'add',
        'data-testid': `add-${kind}`,
        onclick: () => {
          g.children.push(kind === 'group' ? group(g.op === 'all' ? 'any' : 'all') : leaf(kind))
          ctx.changed(true)
        },
      },
      `+ ${label}`,
    )
  return h(
    'div',
    { class: 'group-body' },
    h(
      'div',
      { class: 'group-head' },
      h(
        'div',
        { class: 'seg-toggle', role: 'radiogroup' },
        (['all', 'any'] as const).map((op) =>
          h('button', { class: g.op === op ? 'on' : '', 'data-testid': `group-${op}`, onclick: () => ((g.op = op), ctx.changed(true)) }, op === 'all' ? t('groupAll') : t('groupAny')),
        ),
      ),
      isRoot ? h('span', { class: 'muted' }, t('rootHint')) : null,
    ),
    h('div', { class: `children ${g.op}` }, g.children.length ? g.children.map((c) => renderNode(ctx, c)) : h('div', { class: 'empty' }, t('emptyGroup'))),
    h('div', { class: 'adders' }, add('tag', t('kindTag')), add('attribute', t('kindAttribute')), add('event', t('kindEvent')), add('sequence', t('kindSequence')), add('segment', t('kindSegment')), add('group', t('kindGroup'))),
  )
}

function renderLeaf(ctx: EditorCtx, n: Exclude<RuleNode, GroupNode>): HTMLElement {
  switch (n.kind) {
    case 'tag':
      return tagLeaf(ctx, n)
    case 'attribute':
      return attributeLeaf(ctx, n)
    case 'event':
      return eventLeaf(ctx, n)
    case 'sequence':
      return sequenceLeaf(ctx, n)
    case 'segment':
      return h(
        'div',
        { class: 'leaf' },
        h('span', { class: 'kind' }, t('kindSegment')),
        select(
          { 'data-testid': 'segment-ref', onchange: (e: Event) => ((n.segment = (e.target as HTMLSelectElement).value), ctx.changed(true)) },
          [['', t('chooseSegment')], ...ctx.segments.map((s): [string, string] => [s.id, `${s.name} (${s.id})`])],
          n.segment,
        ),
      )
    case 'raw':
      return h(
        'div',
        { class: 'leaf raw' },
        h('span', { class: 'kind' }, t('kindRaw')),
        h('textarea', {
          rows: 3,
          value: JSON.stringify(n.json),
          onchange: (e: Event) => {
            const el = e.target as HTMLTextAreaElement
            try {
              n.json = JSON.parse(el.value)
              el.classList.remove('bad')
              ctx.changed(false)
            } catch {
              el.classList.add('bad')
            }
          },
        }),
      )
  }
}

function tagLeaf(ctx: EditorCtx, n: TagNode): HTMLElement {
  const usable = ctx.tags.filter((d) => d.purpose.includes(ctx.purpose) || d.name === n.tag)
  const def = ctx.tags.find((d) => d.name === n.tag)
  const tagSelect = select(
    {
      class: 'tag-select',
      'data-testid': 'tag-select',
      onchange: (e: Event) => {
        n.tag = (e.target as HTMLSelectElement).value
        const d = ctx.tags.find((x) => x.name === n.tag)
        if (d) Object.assign(n, defaultCondition(d))
        if (d && !ctx.details.has(d.name)) ctx.needDetail(d.name)
        ctx.changed(true)
      },
    },
    // In Chinese the tag's description alone (its name is an English identifier).
    [['', t('chooseTag')], ...usable.map((d): [string, string] => [d.name, lang() === 'zh' ? d.description.zh : `${d.description.en} · ${d.name}`])],
    n.tag,
  )
  if (!def) return h('div', { class: 'leaf' }, h('span', { class: 'kind' }, t('kindTag')), tagSelect)
  const opSelect = select(
    { 'data-testid': 'op-select', onchange: (e: Event) => ((n.op = (e.target as HTMLSelectElement).value), (n.value = reshape(n.value, n.op, fallbackValue(def, ctx.details.get(def.name)))), ctx.changed(true)) },
    opsForType(def.type).map((o): [string, string] => [o, opLabel(o)]),
    n.op,
  )
  return h('div', { class: 'leaf' }, h('span', { class: 'kind' }, t('kindTag')), tagSelect, opSelect, tagValue(ctx, n, def))
}

/** Labels of an enum or list tag: the definition's values, else those in its distribution. */
function labelsOf(def: Tag, detail: TagDetail | undefined): { value: string; customers?: number }[] {
  const counts = new Map((detail?.distribution ?? []).map((b) => [b.value, b.customers]))
  const names = def.values ?? detail?.distribution.map((b) => b.value) ?? []
  return names.map((v) => ({ value: v, ...(counts.has(v) ? { customers: counts.get(v)! } : {}) }))
}

function fallbackValue(def: Tag, detail: TagDetail | undefined): Scalar {
  if (def.type === 'boolean') return true
  if (def.type === 'number') return detail?.distribution[Math.floor(detail.distribution.length / 2)]?.lo ?? 0
  if (def.type === 'date') return new Date().toISOString().slice(0, 10)
  return labelsOf(def, detail)[0]?.value ?? ''
}

function defaultCondition(def: Tag): Pick<TagNode, 'op' | 'value'> {
  if (def.type === 'boolean') return { op: 'eq', value: true }
  // No label chosen for the marketer: the first one is often "none", which would count nobody.
  if (def.type === 'enum' || def.type === 'string_list') return { op: 'in', value: [] }
  if (def.type === 'date') return { op: 'gte', value: new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10) }
  return { op: 'gte', value: 1 }
}

function tagValue(ctx: EditorCtx, n: TagNode, def: Tag): Child {
  const a = arity(n.op)
  if (a === 'none') return null
  const detail = ctx.details.get(def.name)
  const list = n.value === undefined ? [] : Array.isArray(n.value) ? n.value : [n.value]
  if (def.type === 'boolean' || def.type === 'enum' || def.type === 'string_list') {
    const labels = def.type === 'boolean' ? [{ value: 'true' }, { value: 'false' }] : labelsOf(def, detail)
    const toValue = (v: string): Scalar => (def.type === 'boolean' ? v === 'true' : v)
    const shown = (v: string): Child => (hasValueLabel(def.name, v) ? valueLabel(def.name, v) : h('span', { translate: 'no' }, v))
    if (a === 'one') {
      return select({ 'data-testid': 'value-select', onchange: (e: Event) => ((n.value = toValue((e.target as HTMLSelectElement).value)), ctx.changed(false)) }, labels.map((l): [string, string] => [l.value, valueLabel(def.name, l.value)]), String(list[0] ?? ''))
    }
    if (!labels.length) return h('span', { class: 'muted' }, t('loadingValues'))
    return h(
      'div',
      { class: 'chips', 'data-testid': 'value-chips' },
      labels.map((l) => {
        const on = list.map(String).includes(l.value)
        return h(
          'button',
          {
            class: `chip${on ? ' on' : ''}`,
            'data-value': l.value,
            onclick: () => {
              const next = on ? list.filter((x) => String(x) !== l.value) : [...list, toValue(l.value)]
              n.value = next
              ctx.changed(true)
            },
          },
          shown(l.value),
          l.customers !== undefined ? h('small', null, ` ${l.customers.toLocaleString('en-US')}`) : null,
        )
      }),
    )
  }
  const type = def.type === 'date' ? 'date' : 'number'
  const input = (i: number) =>
    h('input', {
      type,
      class: 'value',
      'data-testid': `value-${i}`,
      value: String(list[i] ?? ''),
      oninput: (e: Event) => {
        const raw = (e.target as HTMLInputElement).value
        const v: Scalar = type === 'date' ? raw : num(raw)
        if (a === 'one') n.value = v
        else n.value = [i === 0 ? v : (list[0] ?? v), i === 1 ? v : (list[1] ?? v)]
        ctx.changed(false)
      },
    })
  const range = detail?.distribution.length ? `${detail.distribution[0]!.value.replace(/^\[|,.*$/g, '')} – ${detail.distribution[detail.distribution.length - 1]!.value.replace(/^.*,|\)$/g, '')}` : ''
  return h('span', { class: 'values' }, input(0), a === 'two' ? [h('span', null, '–'), input(1)] : null, range && type === 'number' ? h('small', { class: 'muted' }, ` ${t('range')} ${range}`) : null)
}

function attributeLeaf(ctx: EditorCtx, n: AttributeNode): HTMLElement {
  const type = ATTRIBUTES[n.attribute] ?? 'text'
  const a = arity(n.op)
  const list = n.value === undefined ? [] : Array.isArray(n.value) ? n.value : [n.value]
  const parse = (s: string): Scalar => (type === 'number' ? num(s) : type === 'boolean' ? s === 'true' : s.trim())
  const value: Child =
    type === 'boolean'
      ? select({ onchange: (e: Event) => ((n.value = (e.target as HTMLSelectElement).value === 'true'), ctx.changed(false)) }, [['true', t('yes')], ['false', t('no')]], String(list[0] ?? true))
      : a === 'list'
        ? h('input', { class: 'value wide', placeholder: t('commaList'), value: list.join(', '), oninput: (e: Event) => ((n.value = csv((e.target as HTMLInputElement).value).map(parse)), ctx.changed(false)) })
        : [0, ...(a === 'two' ? [1] : [])].map((i) =>
            h('input', {
              class: 'value',
              type: type === 'number' ? 'number' : 'text',
              value: String(list[i] ?? ''),
              oninput: (e: Event) => {
                const v = parse((e.target as HTMLInputElement).value)
                n.value = a === 'two' ? [i === 0 ? v : (list[0] ?? v), i === 1 ? v : (list[1] ?? v)] : v
                ctx.changed(false)
              },
            }),
          )
  return h(
    'div',
    { class: 'leaf' },
    h('span', { class: 'kind' }, t('kindAttribute')),
    select(
      { onchange: (e: Event) => ((n.attribute = (e.target as HTMLSelectElement).value), (n.op = 'eq'), (n.value = ATTRIBUTES[n.attribute] === 'boolean' ? true : ATTRIBUTES[n.attribute] === 'number' ? 60 : ''), ctx.changed(true)) },
      Object.keys(ATTRIBUTES).map((k): [string, string] => [k, t(`attr_${k}` as Parameters<typeof t>[0])]),
      n.attribute,
    ),
    select({ onchange: (e: Event) => ((n.op = (e.target as HTMLSelectElement).value), (n.value = reshape(n.value, n.op, type === 'number' ? 0 : type === 'boolean' ? true : '')), ctx.changed(true)) }, opsForAttribute(n.attribute).map((o): [string, string] => [o, opLabel(o)]), n.op),
    value,
  )
}

function eventLeaf(ctx: EditorCtx, n: EventNode): HTMLElement {
  const a = arity(n.op)
  const vals = Array.isArray(n.value) ? n.value : [n.value]
  const unknown = unknownEvents(n.names, ctx.eventNames)
  return h(
    'div',
    { class: 'leaf wrap' },
    h('span', { class: 'kind' }, t('kindEvent')),
    h('input', { class: 'value wide', placeholder: t('eventNames'), title: t('eventsSeen'), list: EVENT_LIST, value: n.names.join(', '), 'data-testid': 'event-names', onchange: (e: Event) => ((n.names = csv((e.target as HTMLInputElement).value)), ctx.changed(true)) }),
    select({ onchange: (e: Event) => ((n.measure = (e.target as HTMLSelectElement).value as EventNode['measure']), ctx.changed(true)) }, [['count', t('measureCount')], ['sum', t('measureSum')], ['distinct', t('measureDistinct')]], n.measure),
    n.measure === 'count' ? null : h('input', { class: 'value', placeholder: t('property'), value: n.property, oninput: (e: Event) => ((n.property = (e.target as HTMLInputElement).value.trim()), ctx.changed(false)) }),
    select({ onchange: (e: Event) => ((n.op = (e.target as HTMLSelectElement).value), (n.value = n.op === 'between' ? [vals[0] ?? 1, vals[1] ?? vals[0] ?? 1] : (vals[0] ?? 1)), ctx.changed(true)) }, EVENT_OPS.map((o): [string, string] => [o, opLabel(o)]), n.op),
    [0, ...(a === 'two' ? [1] : [])].map((i) =>
      h('input', { class: 'value narrow', type: 'number', value: String(vals[i] ?? ''), oninput: (e: Event) => ((n.value = a === 'two' ? vals.map((v, j) => (j === i ? num((e.target as HTMLInputElement).value) : v)) : num((e.target as HTMLInputElement).value)), ctx.changed(false)) }),
    ),
    // "in the last N days" wraps as one piece, never leaving "天" alone on a line.
    h(
      'span',
      { class: 'nowrap' },
      h('span', null, t('inLast')),
      h('input', { class: 'value narrow', type: 'number', min: 1, max: 400, value: String(n.lastDays), 'data-testid': 'last-days', oninput: (e: Event) => ((n.lastDays = num((e.target as HTMLInputElement).value)), ctx.changed(false)) }),
      h('span', { 'data-testid': 'days-unit' }, t('days')),
    ),
    unknown.length
      ? h(
          'div',
          { class: 'hint block', 'data-testid': 'event-warning' },
          unknown.map((u) => h('div', null, `${t('unknownEvent')}：`, h('code', { translate: 'no' }, u.name), u.meant ? [`，${t('didYouMean')} `, h('code', { translate: 'no' }, u.meant), '？'] : null)),
        )
      : null,
  )
}

function sequenceLeaf(ctx: EditorCtx, n: SequenceNode): HTMLElement {
  return h(
    'div',
    { class: 'leaf wrap' },
    h('span', { class: 'kind' }, t('kindSequence')),
    n.steps.map((s, i) => [
      i ? h('span', { class: 'arrow' }, '→') : null,
      h('input', { class: 'value step', placeholder: `${t('step')} ${i + 1}`, value: s.join(', '), onchange: (e: Event) => ((n.steps[i] = csv((e.target as HTMLInputElement).value)), ctx.changed(true)) }),
    ]),
    n.steps.length < 8 ? h('button', { class: 'icon', title: t('addStep'), onclick: () => (n.steps.push([]), ctx.changed(true)) }, '+') : null,
    n.steps.length > 2 ? h('button', { class: 'icon', title: t('removeStep'), onclick: () => (n.steps.pop(), ctx.changed(true)) }, '−') : null,
    h(
      'span',
      { class: 'nowrap' },
      h('span', null, t('within')),
      h('input', { class: 'value narrow', type: 'number', min: 1, value: String(n.withinDays), oninput: (e: Event) => ((n.withinDays = num((e.target as HTMLInputElement).value)), ctx.changed(false)) }),
      h('span', null, t('days')),
    ),
  )
}

/** Writes each node's issues into its slot and marks incomplete nodes; returns issues no node took. */
export function showIssues(tree: HTMLElement, byNode: Map<string, { field?: string; message: string }[]>, incompleteIds: string[]): void {
  for (const el of tree.querySelectorAll<HTMLElement>('.node')) {
    const id = el.dataset.node ?? ''
    const issues = byNode.get(id) ?? []
    el.classList.toggle('has-error', issues.length > 0)
    el.classList.toggle('incomplete', incompleteIds.includes(id))
    const slot = el.querySelector(':scope > .node-issues')
    if (!slot) continue
    slot.replaceChildren(
      ...issues.map(issueLine),
      ...(incompleteIds.includes(id) ? [h('div', { class: 'hint' }, el.querySelector(':scope > .node-row .chips') ? t('chooseValues') : t('incompleteHint'))] : []),
    )
  }
}
