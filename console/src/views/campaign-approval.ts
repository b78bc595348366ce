import { ApiError, api, enc, get } from '../api.js'
import { clear, fmtTime, h, select } from '../dom.js'
import { t, tf, tOr } from '../i18n.js'
import { store } from '../store.js'
import type { Campaign } from '../types.js'

/**
 * Before a campaign goes out: its approval (a marketing campaign runs once a second holder
 * approved its current version) and a test send to one of the bank's test lists. Both panels
 * sit beside the campaign form.
 */

interface Approval {
  version: number
  required: boolean
  status: 'not_required' | 'draft' | 'requested' | 'approved'
  changedBy: string
  requestedBy: string | null
  requestedAt: string | null
  approvedBy: string | null
  approvedAt: string | null
}
interface TestList {
  id: string
  name: string
  members: { customerNo: string; label: string }[]
}
interface TestSend {
  queued: { customerNo: string; label: string; messageVariant?: string }[]
  leftOut: { customerNo: string; label: string; reason: string }[]
}

/** A refusal said in the console's words: by its code where there are words for it. */
const refusal = (e: unknown) => (e instanceof ApiError ? tOr(`apiError_${e.code}`, t('issueInvalid')) : t('issueInvalid'))

export async function approvalPanel(box: HTMLElement, c: Campaign, changed: () => void): Promise<void> {
  const out = h('p', { class: 'small', 'data-testid': 'approval-note' })
  let a: Approval
  try {
    a = await get<Approval>(`/v1/push/campaigns/${enc(c.id)}/approval`)
  } catch (e) {
    return clear(box, h('h3', null, t('approvalTitle')), h('p', { class: 'muted' }, refusal(e)))
  }
  const act = (path: string) => async () => {
    out.textContent = t('saving')
    try {
      // The version on screen, not the server's latest: approving a version nobody here has read is refused (409).
      await api('POST', `/v1/push/campaigns/${enc(c.id)}/${path}`, { version: c.version })
      changed()
    } catch (e) {
      out.textContent = refusal(e)
    }
  }
  const tz = store.tenant().timeZone
  // Holders' names are written as the bank issued the keys: not translated, not checked for English.
  const who = (name: string | null, at: string | null) => (name ? [h('span', { translate: 'no' }, name), at ? ` · ${fmtTime(at, tz)}` : ''] : '—')
  clear(
    box,
    h('h3', null, t('approvalTitle')),
    h('p', { 'data-testid': 'approval-status', 'data-status': a.status }, h('b', null, t(`approval_${a.status}` as 'approval_draft')), ` · v${a.version}`),
    a.version !== c.version ? h('p', { class: 'issue small', 'data-testid': 'approval-stale' }, t('apiError_CONFLICT')) : null,
    a.required
      ? [
          h('p', { class: 'muted small' }, t('approvalRule')),
          h('dl', { class: 'kv small' }, h('dt', null, t('approvalChangedBy')), h('dd', null, who(a.changedBy, null)), h('dt', null, t('approvalRequestedBy')), h('dd', null, who(a.requestedBy, a.requestedAt)), h('dt', null, t('approvalApprovedBy')), h('dd', null, who(a.approvedBy, a.approvedAt))),
          a.status === 'draft' ? h('button', { 'data-testid': 'approval-request', onclick: act('approval/request') }, t('approvalRequest')) : null,
          a.status !== 'approved' ? h('button', { class: 'primary', 'data-testid': 'approval-approve', onclick: act('approval') }, t('approvalApprove')) : null,
        ]
      : h('p', { class: 'muted small' }, t('approvalNotRequired')),
    out,
  )
}

export async function testSendPanel(box: HTMLElement, c: Campaign): Promise<void> {
  let lists: TestList[]
  try {
    lists = (await get<{ lists: TestList[] }>('/v1/push/test-lists')).lists.filter((l) => l.members.length)
  } catch (e) {
    return clear(box, h('h3', null, t('testSendTitle')), h('p', { class: 'muted' }, refusal(e)))
  }
  const out = h('div', { class: 'small', 'data-testid': 'test-send-result' })
  const pick = select({ 'data-testid': 'test-list' }, lists.map((l) => [l.id, `${l.name}（${l.members.length}）`] as [string, string]), lists[0]?.id ?? '')
  // A campaign with variants sends one of them or all (each test phone gets each).
  const variants = c.variants ?? []
  const which = select({ 'data-testid': 'test-variant' }, [['', t('testAllVariants')], ...variants.map((v): [string, string] => [v.id, tf('variantName', { id: v.id })])], '')
  const send = async () => {
    out.textContent = t('testSending')
    try {
      const r = await api<TestSend>('POST', `/v1/push/campaigns/${enc(c.id)}/test`, { list: pick.value, ...(which.value ? { variant: which.value } : {}) })
      clear(
        out,
        h('p', { 'data-testid': 'test-sent' }, `${t('testSent')} ${r.queued.length} · ${t('testLeftOut')} ${r.leftOut.length}`),
        r.queued.map((m) => h('div', null, '✓ ', m.label || m.customerNo, ' ', h('span', { class: 'muted', translate: 'no' }, m.customerNo), m.messageVariant ? ` · ${tf('variantName', { id: m.messageVariant })}` : '')),
        r.leftOut.map((m) => h('div', { class: 'issue', 'data-testid': 'test-left-out' }, '✗ ', m.label || m.customerNo, ' ', h('span', { class: 'muted', translate: 'no' }, m.customerNo), ' · ', tOr(`testReason_${m.reason}`, t('issueInvalid')))),
      )
    } catch (e) {
      out.textContent = refusal(e)
    }
  }
  clear(
    box,
    h('h3', null, t('testSendTitle')),
    h('p', { class: 'muted small' }, t('testSendRule')),
    lists.length
      ? h('div', { class: 'row' }, pick, variants.length ? which : null, h('button', { 'data-testid': 'test-send', onclick: () => void send() }, t('testSend')))
      : h('p', { class: 'muted', 'data-testid': 'test-no-list' }, t('testNoList')),
    testListEditor(lists, () => void testSendPanel(box, c)),
    out,
  )
}

/** A test list as lines of "customer number, label": the bank's own test phones. */
function testListEditor(lists: TestList[], saved: () => void): HTMLElement {
  const first = lists[0]
  const id = h('input', { value: first?.id ?? 'staff', 'data-testid': 'test-list-id', translate: 'no' })
  const name = h('input', { value: first?.name ?? t('testListDefaultName'), 'data-testid': 'test-list-name' })
  const lines = h('textarea', { rows: 3, 'data-testid': 'test-list-members', placeholder: t('testListPlaceholder') })
  lines.value = (first?.members ?? []).map((m) => `${m.customerNo}, ${m.label}`).join('\n')
  const note = h('span', { class: 'small' })
  const save = async () => {
    const members = lines.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const [no, ...rest] = l.split(/[,，]/)
      return { customerNo: no!.trim(), label: rest.join(',').trim() }
    })
    note.textContent = t('saving')
    try {
      await api('PUT', `/v1/push/test-lists/${enc(id.value.trim())}`, { name: name.value, members })
      saved()
    } catch (e) {
      const unknown = e instanceof ApiError ? e.issues.filter((i) => /^members\.\d+\.customerNo$/.test(i.field ?? '')).map((i) => members[Number(i.field!.split('.')[1])]?.customerNo) : []
      note.textContent = unknown.length ? `${t('testListUnknown')} ${unknown.join('、')}` : refusal(e)
    }
  }
  return h(
    'details',
    { 'data-testid': 'test-list-editor' },
    h('summary', null, t('testListEdit')),
    h('label', { class: 'field' }, h('span', null, t('testListId')), id),
    h('label', { class: 'field' }, h('span', null, t('testListName')), name),
    h('label', { class: 'field' }, h('span', null, t('testListMembers')), lines),
    h('button', { 'data-testid': 'test-list-save', onclick: () => void save() }, t('save')),
    ' ',
    note,
  )
}
