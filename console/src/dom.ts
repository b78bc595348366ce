/**
 * A small element builder instead of a framework: the console is a handful of forms and charts,
 * and building nodes (never HTML strings) keeps data from the API out of the parser, which
 * matters on a page that holds an API key.
 */

type Handler = (e: Event) => void
export type Attrs = Record<string, string | number | boolean | undefined | null | Handler>
export type Child = Node | string | number | null | undefined | false | Child[]

// Set as properties, not attributes: the attribute only sets the initial state of a control.
const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'open'])

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v)
    else if (PROPS.has(k)) (el as unknown as Record<string, unknown>)[k] = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c)
  }
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren()
  append(el, children)
}

/** A select whose options are [value, label] pairs. */
export function select(attrs: Attrs, options: [string, string][], value: string): HTMLSelectElement {
  const el = h('select', attrs, options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)))
  el.value = value
  return el
}

export function debounce<A extends unknown[]>(ms: number, fn: (...a: A) => void): ((...a: A) => void) & { cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined
  const d = (...a: A) => {
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => fn(...a), ms)
  }
  d.cancel = () => timer && clearTimeout(timer)
  return d
}

export const fmtInt = (n: number) => n.toLocaleString('en-US')
export const fmtPct = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(digits)}%`)

/**
 * API timestamps are UTC (`2026-11-28 19:13:35.123`, or ISO with a zone); marketers read them in
 * their bank's time zone, as `11-29 03:13` (with the year when asked).
 */
export function fmtTime(s: string | null | undefined, timeZone: string, o: { year?: boolean } = {}): string {
  if (!s) return '—'
  const at = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s.replace(' ', 'T')}Z`)
  if (Number.isNaN(at.getTime())) return s
  const p = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' })
      .formatToParts(at)
      .map((x) => [x.type, x.value]),
  )
  return `${o.year ? `${p.year}-` : ''}${p.month}-${p.day} ${p.hour}:${p.minute}`
}
