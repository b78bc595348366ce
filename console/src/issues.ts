import { h } from './dom.js'
import { issueText, lang, t } from './i18n.js'

/**
 * An API issue as a line of the page. In Chinese the line says it in Chinese, naming the tag at
 * fault or the field (as written) of a message it has no words for; the API's English words go to
 * the tooltip, for whoever reports it.
 */
export function issueLine(i: { field?: string | undefined; message: string }): HTMLElement {
  const { tag, text } = issueText(i.message)
  return h(
    'div',
    { class: 'issue', title: [i.field, i.message].filter(Boolean).join(': ') },
    // The field path stays in front of a message said only as "not accepted", so the marketer knows where.
    (lang() === 'en' || !tag) && i.field ? [h('code', { translate: 'no' }, i.field), ' '] : null,
    tag ? [t('tag'), ' ', h('code', { translate: 'no' }, tag), ' '] : null,
    text,
  )
}
