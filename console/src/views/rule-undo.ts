import { h } from '../dom.js'
import { t } from '../i18n.js'

/**
 * The rule editor's unsaved-changes marker and undo. Every change the editor reports is kept
 * as a copy of the state (typing in one field within a moment counts as one change); undo goes
 * back one, and the marker compares the state with the one last saved or loaded.
 */

interface Entry<S> {
  state: S
  key: string
  at: number
}

const TYPING_MS = 800

export function createRuleUndo<S>(o: { read: () => S; write: (s: S) => void; key: (s: S) => string; unsavedOnly?: () => boolean }) {
  let stack: Entry<S>[] = []
  let baseline = ''
  const marker = h('span', { class: 'unsaved', 'data-testid': 'unsaved', 'aria-live': 'polite' })
  const button = h('button', { class: 'small', 'data-testid': 'undo', title: t('undoHint'), onclick: () => undo() }, `↶ ${t('undo')}`)
  const entry = (): Entry<S> => {
    const state = structuredClone(o.read())
    return { state, key: o.key(state), at: Date.now() }
  }

  function show() {
    const dirty = stack.at(-1)?.key !== baseline
    // Something never saved is not "saved" while untouched: the marker says nothing then.
    const blank = !dirty && o.unsavedOnly?.() === true
    marker.dataset.state = dirty ? 'unsaved' : blank ? 'new' : 'saved'
    marker.textContent = dirty ? `● ${t('unsaved')}` : blank ? '' : t('allSaved')
    button.disabled = stack.length < 2
  }

  /** After a change: kept as one more step, or folded into the last when it is more typing in the same field. */
  function changed(structure: boolean) {
    const e = entry()
    const top = stack.at(-1)
    if (top && top.key === e.key) return show()
    if (top && !structure && stack.length > 1 && e.at - top.at < TYPING_MS) stack[stack.length - 1] = e
    else stack.push(e)
    show()
  }

  function undo() {
    if (stack.length < 2) return
    stack.pop()
    o.write(structuredClone(stack.at(-1)!.state))
    show()
  }

  return {
    marker,
    button,
    changed,
    undo,
    /** A segment opened, saved or started anew: this state is the saved one, and the steps start again. */
    reset(saved = true) {
      const e = entry()
      stack = [e]
      if (saved) baseline = e.key
      show()
    },
    /** Saved as it is now (the steps are kept). */
    saved() {
      baseline = entry().key
      show()
    },
    /** The baseline is a state other than the one shown (a draft kept across screens). */
    setBaseline(s: S) {
      baseline = o.key(s)
      show()
    },
  }
}
