import { ApiError, api, session } from '../api.js'
import { clear, h } from '../dom.js'
import { t } from '../i18n.js'
import type { Tenant } from '../types.js'

/**
 * Sign-in with an admin key. The key is checked against the API before it is kept: the tenant
 * it belongs to, and that it is an admin key (GET /v1/keys needs one), since the console saves
 * segments and campaigns.
 */
export function signInView(root: HTMLElement, done: (tenant: Tenant) => void, langSwitch: HTMLElement): void {
  const input = h('input', { type: 'password', autocomplete: 'off', placeholder: 'qm_a_…', 'data-testid': 'api-key' })
  const err = h('p', { class: 'issue', 'data-testid': 'signin-error' })
  const submit = async (e: Event) => {
    e.preventDefault()
    const key = input.value.trim()
    err.textContent = ''
    if (!key) {
      err.textContent = t('emptyKey')
      return input.focus()
    }
    try {
      const tenant = await api<Tenant>('GET', '/v1/tenant', undefined, { key })
      await api('GET', '/v1/keys', undefined, { key })
      session.signIn(key)
      done(tenant)
    } catch (x) {
      const code = x instanceof ApiError ? x.code : ''
      err.textContent = code === 'SCOPE_FORBIDDEN' ? t('needAdmin') : code === 'AUTH_INVALID' || code === 'AUTH_MISSING' ? t('badKey') : (x as Error).message
    }
  }
  clear(
    root,
    h(
      'div',
      { class: 'signin' },
      h(
        'form',
        { class: 'panel', onsubmit: (e: Event) => void submit(e) },
        h('div', { class: 'brand big' }, '千面', h('span', null, ' Qianmian')),
        h('p', { class: 'muted' }, t('signinIntro')),
        h('label', { class: 'field' }, h('span', null, t('apiKey')), input),
        h('button', { class: 'primary block', type: 'submit', 'data-testid': 'signin' }, t('signIn')),
        err,
        h('div', { class: 'row end' }, langSwitch),
      ),
    ),
  )
  input.focus()
}
